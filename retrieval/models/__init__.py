"""The networks and how they are loaded and run: CLIP (weights, preprocessing, the encoder, its int8 and
ONNX text towers, per-machine precision), the CLIP4Cir Combiner, trusted checkpoint folders and provenance."""

"""Features of a collection's pictures: safe decoding, and the resumable reader -> encoder -> writer pipeline."""

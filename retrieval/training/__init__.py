"""CLIP4Cir's training recipe: stage 0 (tiny CLIP pretraining, shapes only), stage 1 (CLIP fine-tuning on
triplets with the element-wise sum), stage 2 (the Combiner on frozen stage-1 features)."""

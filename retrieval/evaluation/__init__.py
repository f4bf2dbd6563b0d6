"""Figures of retrieval quality: Recall@K, CIRR submission files, open requests judged from scene graphs,
intervals, and the multi-turn simulation with its simulated person."""

"""Speed and memory, printed as figures: encoders, extraction, indexes, the in-process turn, and the
report that writes docs/benchmarks.md."""

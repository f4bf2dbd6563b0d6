"""From features to a turn's query: the fusions (Combiner, sums, one side) and conversation memory."""

"""The public home of the Combiner and the fusions, kept where notebooks and other tools import them from:
`Fuser(combiner_or_None, dim).fuse(mode, image, text)`, `load_combiner(path)`. The code lives in
`retrieval.models.combiner_model` (the network and its checkpoints) and `retrieval.fusion.fuser`."""

from retrieval.fusion.fuser import Fuser, Mode
from retrieval.models.combiner_model import Combiner, load_combiner, save_combiner

__all__ = ["Combiner", "Fuser", "Mode", "load_combiner", "save_combiner"]

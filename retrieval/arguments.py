"""The arguments of `python -m retrieval`: every option says what it does and its default, fixed values are
`choices`, and every command ends its help with an example (tests/web/test_command_help.py checks all
three). The commands themselves live in `retrieval/cli.py`."""

from __future__ import annotations

import argparse
from typing import Any

from foundation.command_help import HelpFormatter, examples

MODES = ["combiner", "sum", "sum-normalized", "text", "image"]  # retrieval.fusion.fuser.Mode, without importing torch
DATASETS = ["cirr", "fashioniq", "shapes"]  # retrieval.datasets.DATASETS
# retrieval.models.precision's PRECISION_NAMES, without importing torch: auto, or levers forced, each also with
# "-compile" (compiled image batches)
# (tests/engine/test_arguments.py holds the two lists equal)
PRECISIONS = [
    "auto",
    *(f"{n}{c}" for c in ("", "-compile") for n in ("fp32", "bf16", "int8", "bf16-int8", "onnx-int8")),
]
INDEX_TYPES = ["flat", "ivf", "hnsw", "ivfpq"]  # retrieval.index.faiss_index.INDEX_TYPES, without importing faiss
DEVICES = ["cpu", "cuda", "auto"]
POLICIES = ["random", "image", "text", "combiner", "memory"]


def _add(sub: Any, name: str, help_text: str, *example: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help_text, description=help_text, epilog=examples(*example), formatter_class=HelpFormatter
    )
    return parser


def _model_args(p: argparse.ArgumentParser, modes: list[str]) -> None:
    p.add_argument("--root", required=True, help="dataset root (CIRR: the cirr_dataset folder)")
    p.add_argument("--clip", required=True, help="CLIP model name, checkpoint path or random:<arch>")
    p.add_argument("--combiner", default="sum", help="Combiner checkpoint path, or 'sum' for none")
    p.add_argument("--mode", nargs="+", choices=MODES, default=modes, help="retrieval modes to run, one after another")
    p.add_argument("--device", default="cpu", choices=DEVICES, help="where the models run (auto: cuda when present)")
    _preprocessing_args(p)
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="encoder precision: auto (chosen for this CPU), or one lever forced to measure it",
    )


def _preprocessing_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preprocessing",
        choices=["clip", "targetpad"],
        default=None,
        help="image preprocessing (default: what the CLIP checkpoint records, else the dataset preset or 'clip')",
    )
    p.add_argument("--targetpad", action="store_true", help="same as --preprocessing targetpad (ratio 1.25)")


def _training_args(p: argparse.ArgumentParser, epochs: int | None, lr: float | None) -> None:
    p.add_argument("--out", required=True, help="checkpoint to write (the best epoch); <out>.last.pt resumes")
    p.add_argument("--epochs", type=int, default=epochs, help="passes over the training split" + _preset(epochs))
    p.add_argument("--lr", type=float, default=lr, help="learning rate" + _preset(lr))
    p.add_argument("--seed", type=int, default=0, help="random seed of initialization and batch order")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after an epoch once this much time passed")
    p.add_argument("--restart", action="store_true", help="ignore <out>.last.pt and start from scratch")


def _preset(value: float | None) -> str:
    return "" if value else " (default: the dataset's preset)"


def _bench_args(sub: Any) -> None:
    p = _add(
        sub,
        "bench-encode",
        "CLIP encode throughput with random weights (same cost as trained)",
        "python -m retrieval bench-encode --arch RN50x4 --batch 32 --precision fp32 auto",
    )
    p.add_argument("--arch", nargs="+", default=["RN50x4", "ViT-B/32"], help="CLIP architectures to time")
    p.add_argument("--batch", type=int, default=32, help="images per encoder call")
    p.add_argument("--repeats", type=int, default=1, help="timed runs per architecture and precision")
    p.add_argument("--precision", nargs="+", choices=PRECISIONS, default=["fp32", "auto"], help="precisions to time")
    p.add_argument("--extract", type=int, default=0, help="also time a whole extraction of this many JPEG files")
    p.add_argument(
        "--extract-blocks", type=int, default=0, help="time it with a ViT cut to N blocks (a stand-in for a faster CPU)"
    )

    p = _add(
        sub,
        "bench-turn",
        "an in-process turn at real model size, beside the naive turn",
        "python -m retrieval bench-turn --arch RN50x4 --count 10000 100000 --turns 100",
    )
    p.add_argument("--arch", nargs="+", default=["RN50x4"], help="CLIP architectures to time")
    p.add_argument("--count", nargs="+", type=int, default=[100_000], help="collection sizes (e.g. 10000 1000000)")
    p.add_argument("--turns", type=int, default=200, help="turns timed per collection size")
    p.add_argument("--exclude", type=int, default=50, help="ids the conversation has already shown")
    p.add_argument("--index", default="auto", choices=["auto", *INDEX_TYPES], help="index type (auto: by size)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help="encoder precision")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--totals", action="store_true", help="with --json, every turn's total (for the histogram)")
    p.add_argument(
        "--threads", type=int, default=1, help="torch and Faiss threads (a search worker's CIR_SEARCH_THREADS)"
    )

    p = _add(
        sub,
        "bench-report",
        "every benchmark, written as benchmarks.md with plots",
        "python -m retrieval bench-report --preset quick --out docs",
    )
    p.add_argument("--preset", default="quick", choices=["full", "quick", "smoke"], help="how big and long the runs")
    p.add_argument("--out", default="docs", help="folder for benchmarks.md, benchmarks.json and the plots")
    p.add_argument("--render-only", action="store_true", help="redraw the page from OUT/benchmarks.json")
    p.add_argument(
        "--extract-only",
        action="store_true",
        help="measure the extraction table again (at the page's preset), keep the rest",
    )

    p = _add(
        sub,
        "bench-index",
        "build time, memory, latency and recall of each index type",
        "python -m retrieval bench-index --count 100000 --dim 640 --types flat hnsw --ef-search 32 64",
    )
    p.add_argument("--count", type=int, default=100_000, help="vectors in the index")
    p.add_argument("--dim", type=int, default=640, help="vector dimension")
    p.add_argument("--types", nargs="+", choices=INDEX_TYPES, default=INDEX_TYPES, help="index types to build")
    p.add_argument("--queries", type=int, default=200, help="queries timed per index")
    p.add_argument("--exclude", type=int, default=0, help="ids left out of each query, drawn from its neighbours")
    p.add_argument("--nlist", type=int, default=0, help="IVF lists (0: the default rule)")
    p.add_argument("--hnsw-m", type=int, default=32, help="HNSW neighbours per node")
    p.add_argument("--nprobe", type=int, nargs="*", default=[], help="IVF settings to sweep")
    p.add_argument("--ef-search", type=int, nargs="*", default=[], help="HNSW settings to sweep")


def _world_args(sub: Any) -> None:
    p = _add(
        sub,
        "shapes",
        "generate a shapes world in CIRR's layout",
        "python -m retrieval shapes --out var/shapes --images 2000 --seed 0",
    )
    p.add_argument("--out", required=True, help="folder to write the world into")
    p.add_argument("--images", type=int, required=True, help="images in all (70%% train, 20%% val, 10%% test1)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the world")
    p.add_argument("--size", type=int, default=128, help="picture side in pixels")
    p.add_argument("--workers", type=int, default=2, help="processes drawing pictures")
    p.add_argument(
        "--render-splits",
        nargs="+",
        choices=["train", "val", "test1"],
        default=["train", "val", "test1"],
        help="splits whose pictures are drawn",
    )
    p.add_argument("--render-families", type=int, default=None, help="draw only the first N families of a split")

    p = _add(
        sub,
        "train-clip",
        "stage 0: pretrain a tiny CLIP on a shapes world",
        "python -m retrieval train-clip --root var/shapes --out var/models/shapes-clip.pt --epochs 5",
    )
    p.add_argument("--root", required=True, help="a shapes world (python -m retrieval shapes)")
    _training_args(p, epochs=20, lr=1e-3)
    p.add_argument("--embed-dim", type=int, default=128, help="width of the joint embedding")
    p.add_argument("--resolution", type=int, default=96, help="input picture side in pixels")
    p.add_argument("--vision-width", type=int, default=8, help="width of the image tower")

    p = _add(
        sub,
        "train-default",
        "all four stages for the offline default model (shapes world)",
        "python -m retrieval train-default --root var/shapes --out var/models --preset quick",
    )
    p.add_argument("--root", required=True, help="a shapes world (python -m retrieval shapes)")
    p.add_argument("--out", required=True, help="folder for shapes-clip.pt, shapes-combiner.pt, manifest.json")
    p.add_argument("--preset", choices=["full", "quick"], default="full", help="epochs and sizes of the stages")
    p.add_argument("--seed", type=int, default=0, help="random seed of every stage")

    p = _add(
        sub,
        "train-open",
        "stage 3: the text tower and Combiner learn open requests from scene graphs (shapes world)",
        "python -m retrieval train-open --root var/shapes --models models/shapes --steps 3000",
    )
    p.add_argument("--root", required=True, help="the shapes world the models were trained on")
    p.add_argument("--models", required=True, help="folder with shapes-clip.pt, shapes-combiner.pt, manifest.json")
    p.add_argument("--steps", type=int, default=3000, help="training steps")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this long (validating first)")
    p.add_argument("--lr-text", type=float, default=3e-5, help="learning rate of the text tower")
    p.add_argument(
        "--unknown", type=float, default=0.5, help="share of training texts with unknown words for the template's own"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed")

    p = _add(
        sub,
        "train-judge",
        "stage 4: the judge learns to order the Combiner's first candidates by what was asked (shapes world)",
        "python -m retrieval train-judge --root var/shapes --models models/shapes --steps 3000",
    )
    p.add_argument("--root", required=True, help="the shapes world the models were trained on")
    p.add_argument("--models", required=True, help="folder with shapes-clip.pt, shapes-combiner.pt, manifest.json")
    p.add_argument("--steps", type=int, default=3000, help="training steps")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this long (validating first)")
    p.add_argument("--lr", type=float, default=3e-4, help="learning rate")
    p.add_argument("--start", default=None, help="a judge checkpoint to go on from (a run cut by its time budget)")
    p.add_argument(
        "--descriptions", type=int, default=16, help="lists of words alone per step, beside the edits (0: none)"
    )
    p.add_argument(
        "--unknown", type=float, default=0.5, help="share of training texts with unknown words for the template's own"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed")

    for name, help_text, example in (
        (
            "finetune-clip",
            "stage 1: fine-tune CLIP on triplets with the element-wise sum (presets: CLIP4Cir's)",
            "python -m retrieval finetune-clip --dataset cirr --root data/cirr --clip RN50x4 --out var/clip-ft.pt",
        ),
        (
            "train-combiner",
            "stage 2: train the Combiner on frozen CLIP features (presets: CLIP4Cir's)",
            "python -m retrieval train-combiner --dataset cirr --root data/cirr --clip var/clip-ft.pt "
            "--out var/combiner.pt",
        ),
    ):
        p = _add(sub, name, help_text, example)
        p.add_argument("--dataset", required=True, choices=DATASETS, help="dataset format (each has its preset)")
        p.add_argument("--root", required=True, help="dataset root (CIRR: the cirr_dataset folder)")
        p.add_argument("--clip", required=True, help="CLIP model name or checkpoint path")
        _preprocessing_args(p)
        _training_args(p, epochs=None, lr=None)
        if name == "finetune-clip":
            p.add_argument("--groups-per-batch", type=int, default=None, help="img_sets per batch (default: preset)")
        else:
            p.add_argument("--batch-size", type=int, default=None, help="triplets per batch (default: preset)")


def _evaluation_args(sub: Any) -> None:
    p = _add(
        sub,
        "evaluate",
        "Recall@K (and Recall_subset@K) of a model on a split",
        "python -m retrieval evaluate --dataset cirr --root data/cirr --clip RN50x4 --combiner var/combiner.pt",
    )
    p.add_argument("--dataset", required=True, choices=DATASETS, help="dataset format")
    p.add_argument("--split", default="val", help="split to evaluate (val, test1, test, ...)")
    _model_args(p, ["combiner"])
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--plot", default=None, help="write a recall-vs-K plot (PNG) here")
    p.add_argument(
        "--open-requests",
        action="store_true",
        help="shapes world: also judge open requests (any edit of any picture, held-out wording) from the scene "
        "graphs, every baseline mode, and requests from words alone",
    )
    p.add_argument("--requests", type=int, default=400, help="open requests drawn (with --open-requests)")
    p.add_argument("--descriptions", type=int, default=400, help="words-alone requests drawn (with --open-requests)")
    p.add_argument("--seed", type=int, default=0, help="seed of the drawn requests (with --open-requests)")
    p.add_argument(
        "--judge",
        default=None,
        help="judge checkpoint (with --open-requests): also rank the Combiner's pool by it, as served",
    )

    p = _add(
        sub,
        "cirr-submission",
        "write the two files CIRR's test server takes",
        "python -m retrieval cirr-submission --root data/cirr --clip RN50x4 --combiner var/combiner.pt --out var/sub",
    )
    p.add_argument("--dataset", default="cirr", choices=DATASETS, help="dataset format")
    p.add_argument("--split", default="test1", help="split to answer")
    p.add_argument("--out", required=True, help="folder for the two submission files")
    p.add_argument("--name", default="cirweb", help="name written into the submission files")
    _model_args(p, ["combiner"])

    p = _add(
        sub,
        "simulate",
        "multi-turn success of a simulated person, with baselines (shapes world)",
        "python -m retrieval simulate --root var/shapes --clip var/models/shapes-clip.pt "
        "--combiner var/models/shapes-combiner.pt --limit 50",
    )
    p.add_argument("--split", default="val", help="split whose episodes are played")
    p.add_argument("--turns", type=int, default=10, help="turns the person takes before giving up")
    p.add_argument("--shown", type=int, default=10, help="results the person looks at each turn")
    p.add_argument("--limit", type=int, default=None, help="episodes to run (default: all)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the person")
    p.add_argument("--policies", nargs="+", choices=POLICIES, default=POLICIES, help="policies compared")
    p.add_argument(
        "--siblings",
        choices=["both", "with", "without"],
        default="both",
        help="galleries with the target family's one-edit stepping stones, without, or both",
    )
    p.add_argument("--misread", type=float, default=0.10, help="chance of misreading each attribute")
    p.add_argument(
        "--memory-weights",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="override retrieval.fusion.memory weights: requests, decay, chosen, rejected, anchor, anchor_growth, seen",
    )
    p.add_argument("--out", default=None, help="also write the JSON here")
    p.add_argument("--tune", action="store_true", help="tune the memory weights on this split (use a train split)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (one is fastest for these tiny steps)")
    _model_args(p, ["combiner"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m retrieval",
        description="cirweb's composed image retrieval engine",
        epilog=examples("python -m retrieval shapes --out var/shapes --images 2000", "python -m retrieval COMMAND -h"),
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _bench_args(sub)
    _world_args(sub)
    _evaluation_args(sub)
    return parser

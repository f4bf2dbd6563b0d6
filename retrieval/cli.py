"""The engine's command line. Each subcommand parses its arguments and calls one engine function;
errors the user can fix are printed as one sentence with exit status 2, never as a traceback."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from retrieval.errors import DatasetError, RetrievalError

MODES = ["combiner", "sum", "sum-normalized", "text", "image"]  # retrieval.combiner.Mode, without importing torch
Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        COMMANDS[name] = fn
        return fn

    return register


@command("bench-encode")
def _bench_encode(args: argparse.Namespace) -> int:
    """One JSON line per architecture and precision; with --extract, also the whole extraction's ratio."""
    from retrieval.benchmarks import bench_encode, bench_extract

    for arch in args.arch:
        for figures in bench_encode(arch, batch=args.batch, repeats=args.repeats, precisions=tuple(args.precision)):
            print(json.dumps(asdict(figures)), flush=True)
        if args.extract:
            print(json.dumps(asdict(bench_extract(arch, images=args.extract, batch=args.batch))), flush=True)
    return 0


@command("bench-turn")
def _bench_turn(args: argparse.Namespace) -> int:
    """One line (or JSON object) per architecture and size: the turn's p50/p99 and stages, beside the naive turn."""
    from retrieval.bench_turn import bench_turn
    from retrieval.precision import Precision

    precision = None if args.precision == "auto" else Precision.named(args.precision)
    for arch in args.arch:
        for count in args.count:
            run = bench_turn(
                arch, count, turns=args.turns, excluded=args.exclude, index_type=args.index, precision=precision
            )
            figures = asdict(run)
            totals = figures.pop("totals_ms")
            if args.totals:
                figures["totals_ms"] = totals
            if args.json:
                print(json.dumps(figures), flush=True)
            else:
                print(
                    f"{arch} {count:>9,} {figures['index_type']:>5}: turn p50 {figures['total_p50_ms']} ms "
                    f"p99 {figures['total_p99_ms']} ms (text {figures['text_p50_ms']}, reference "
                    f"{figures['reference_p50_ms']}, combine {figures['combine_p50_ms']}, search "
                    f"{figures['search_p50_ms']}); naive p50 {figures['naive_p50_ms']} ms: "
                    f"{figures['speedup_p50']}x; recall@10 vs naive {figures['recall_at_10_vs_naive']}",
                    flush=True,
                )
    return 0


@command("bench-report")
def _bench_report(args: argparse.Namespace) -> int:
    """Runs every benchmark at the preset's sizes and writes docs/benchmarks.md with its plots."""
    from retrieval import bench_report

    out = Path(args.out)
    report = bench_report.load(out / "benchmarks.json") if args.render_only else bench_report.run(args.preset)
    print(bench_report.write(report, out))
    return 0


@command("bench-index")
def _bench_index(args: argparse.Namespace) -> int:
    from retrieval.benchmarks import bench_index
    from retrieval.index import IndexParams

    figures = bench_index(
        args.count,
        args.dim,
        args.types,
        queries=args.queries,
        exclude=args.exclude,
        params=IndexParams(nlist=args.nlist, hnsw_m=args.hnsw_m),
        nprobes=args.nprobe,
        ef_searches=args.ef_search,
    )
    print(json.dumps([asdict(f) for f in figures], indent=1))
    return 0


@command("shapes")
def _shapes(args: argparse.Namespace) -> int:
    from retrieval.datasets.shapes_world import generate_world

    summary = generate_world(
        args.out,
        args.images,
        args.seed,
        size=args.size,
        workers=args.workers,
        command_line=" ".join(sys.argv),
        render_splits=tuple(args.render_splits),
        render_families=args.render_families,
    )
    print(json.dumps(summary))
    return 0


@command("train-clip")
def _train_clip(args: argparse.Namespace) -> int:
    from retrieval.training.clip_pretrain import TinyClipConfig, train_clip

    config = TinyClipConfig(embed_dim=args.embed_dim, image_resolution=args.resolution, vision_width=args.vision_width)
    result = train_clip(
        Path(args.root),
        Path(args.out),
        config=config,
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
        max_minutes=args.max_minutes,
        restart=args.restart,
    )
    print(json.dumps(result))
    return 0


@command("train-default")
def _train_default(args: argparse.Namespace) -> int:
    from retrieval.training.recipe import train_default_models

    manifest = train_default_models(Path(args.root), Path(args.out), preset=args.preset, seed=args.seed)
    print(json.dumps(manifest))
    return 0


@command("finetune-clip")
@command("train-combiner")
def _train_stage(args: argparse.Namespace) -> int:
    """Stages 1 and 2 share their inputs: a dataset's train and val splits and a CLIP to start from."""
    from retrieval.datasets import load_dataset
    from retrieval.training.clip_finetune import finetune_clip
    from retrieval.training.combiner_train import train_combiner

    train, val = load_dataset(args.dataset, args.root, "train"), load_dataset(args.dataset, args.root, "val")
    print(train.report(), file=sys.stderr)
    common = dict(
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
        preprocessing="targetpad" if args.targetpad else args.preprocessing,
        max_minutes=args.max_minutes,
        restart=args.restart,
    )
    if args.command == "finetune-clip":
        result = finetune_clip(train, val, args.clip, Path(args.out), groups_per_batch=args.groups_per_batch, **common)
    else:
        result = train_combiner(train, val, args.clip, Path(args.out), batch_size=args.batch_size, **common)
    print(json.dumps(result))
    return 0


def _preprocessing(args: argparse.Namespace) -> Any:
    """--targetpad or --preprocessing when given, else what the CLIP checkpoint records (else CLIP's own)."""
    from retrieval.provenance import recorded_preprocessing

    return "targetpad" if args.targetpad else args.preprocessing or recorded_preprocessing(args.clip)


def _load_models(args: argparse.Namespace) -> tuple[Any, Any]:
    from retrieval.combiner import Fuser, load_combiner
    from retrieval.encoders import load_clip
    from retrieval.precision import Precision

    combiner = load_combiner(args.combiner) if args.combiner and args.combiner != "sum" else None
    if combiner is None and "combiner" in args.mode:
        raise RetrievalError("mode 'combiner' needs a Combiner checkpoint: pass --combiner PATH (or --mode sum)")
    precision = None if args.precision == "auto" else Precision.named(args.precision)
    encoder = load_clip(args.clip, device=args.device, preprocessing=_preprocessing(args), precision=precision)
    return encoder, Fuser(combiner, encoder.dim)


def _provenance(args: argparse.Namespace, encoder: Any) -> dict[str, Any]:
    from retrieval.encoders import TargetPad
    from retrieval.provenance import provenance

    steps = getattr(encoder.preprocess, "transforms", [])
    kind = "targetpad" if any(isinstance(s, TargetPad) for s in steps) else "clip"
    combiner = args.combiner if args.combiner != "sum" else None
    return provenance(args.root, args.clip, combiner, kind)


@command("evaluate")
def _evaluate(args: argparse.Namespace) -> int:
    """Prints (or, with --json, one JSON object of) the metrics of the first mode at the top level, and every
    mode's metrics under "modes"."""
    from retrieval.combiner import Mode
    from retrieval.datasets import load_dataset
    from retrieval.evaluate import encode_gallery, evaluate_split, format_metrics, recall_plot

    data = load_dataset(args.dataset, args.root, args.split)
    print(data.report(), file=sys.stderr)
    encoder, fuser = _load_models(args)
    modes = [Mode(m) for m in args.mode]
    per_mode: dict[str, dict[str, Any]] = {}
    gallery = encode_gallery(encoder, data.images) if args.dataset != "fashioniq" else None  # once for all modes
    for mode in modes:
        if args.dataset == "fashioniq":
            from retrieval.datasets.fashioniq import evaluate_fashioniq

            per_mode[mode.value] = dict(evaluate_fashioniq(encoder, fuser, data, mode))
        else:
            per_mode[mode.value] = evaluate_split(encoder, fuser, data, mode, gallery=gallery)
    results: dict[str, Any] = {
        "dataset": args.dataset,
        "split": args.split,
        "clip": args.clip,
        "combiner_checkpoint": args.combiner,
        "provenance": _provenance(args, encoder),
        "skipped": data.skipped,
        "mode": modes[0].value,
        **per_mode[modes[0].value],
        "modes": per_mode,
    }
    if args.plot and args.dataset != "fashioniq":
        results["plot"] = str(recall_plot(per_mode, Path(args.plot)))
    if args.json:
        print(json.dumps(results))
    else:
        for mode in modes:
            print(f"{mode.value:>8}: {format_metrics(per_mode[mode.value])}")
    return 0


@command("cirr-submission")
def _cirr_submission(args: argparse.Namespace) -> int:
    from retrieval.combiner import Mode
    from retrieval.datasets import load_dataset
    from retrieval.submission import validate_cirr_submission, write_cirr_submission

    data = load_dataset(args.dataset, args.root, args.split)
    missing = {reason: n for reason, n in data.skipped.items() if "annotation" in reason}
    if missing:  # the test server scores every query: a partial submission would be scored as wrong answers
        raise DatasetError(f"cannot answer every query of {args.split}: skipped {missing}; fix the images first")
    encoder, fuser = _load_models(args)
    recall, subset = write_cirr_submission(
        encoder, fuser, data, Path(args.out), mode=Mode(args.mode[0]), name=args.name
    )
    problems = validate_cirr_submission(recall, subset, data)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    print(json.dumps({"recall": str(recall), "recall_subset": str(subset), "queries": len(data.triplets)}))
    return 1 if problems else 0


@command("simulate")
def _simulate(args: argparse.Namespace) -> int:
    """One JSON object: the run's settings and provenance, and one result per (gallery, policy)."""
    import torch

    from retrieval.memory import DEFAULT_WEIGHTS, MemoryWeights
    from retrieval.sim_user import UserModel
    from retrieval.simulate import simulate

    # Many tiny sequential steps: one thread is far faster on a shared machine (measured: 10 ms a text
    # with one thread, 160 ms with two, on 2 busy cores).
    torch.set_num_threads(args.threads)
    encoder, fuser = _load_models(args)
    weights = MemoryWeights(**{**DEFAULT_WEIGHTS.as_dict(), **dict(_weight(w) for w in args.memory_weights)})
    user = UserModel(misread=args.misread)
    siblings = {"both": (True, False), "with": (True,), "without": (False,)}[args.siblings]
    if args.tune:
        from retrieval.simulate import load_world, tune

        world = load_world(encoder, Path(args.root), args.split, args.limit, args.seed)
        best, trials = tune(encoder, fuser, world, user=user, start=weights, max_turns=args.turns, seed=args.seed,
                            progress=lambda line: print(line, file=sys.stderr, flush=True))  # fmt: skip
        tuned = {"split": args.split, "episodes": len(world.episodes), "best": best.as_dict(), "trials": trials}
        tuned["provenance"] = _provenance(args, encoder)
        print(json.dumps(tuned, indent=1))
        if args.out:
            Path(args.out).write_text(json.dumps(tuned, indent=1) + "\n")
        return 0
    results = simulate(
        encoder,
        fuser,
        Path(args.root),
        split=args.split,
        policies=tuple(args.policies),
        siblings=siblings,
        max_turns=args.turns,
        shown=args.shown,
        limit=args.limit,
        seed=args.seed,
        user=user,
        weights=weights,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    report = {
        "split": args.split,
        "seed": args.seed,
        "user": user.as_dict(),
        "memory_weights": weights.as_dict(),
        "provenance": _provenance(args, encoder),
        "results": results,
    }
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


def _weight(item: str) -> tuple[str, float]:
    name, _, value = item.partition("=")
    try:
        return name, float(value)
    except ValueError:
        raise RetrievalError(f"--memory-weights takes name=number pairs, not {item!r}") from None


def _model_args(p: argparse.ArgumentParser, modes: list[str]) -> None:
    p.add_argument("--root", required=True, help="dataset root (CIRR: the cirr_dataset folder)")
    p.add_argument("--clip", required=True, help="CLIP model name, checkpoint path or random:<arch>")
    p.add_argument("--combiner", default="sum", help="Combiner checkpoint path, or 'sum' for none")
    p.add_argument("--mode", nargs="+", choices=MODES, default=modes)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    _preprocessing_args(p)
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "int8", "bf16-int8"],
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
    p.add_argument("--epochs", type=int, default=epochs, help="default: the dataset's preset" if not epochs else None)
    p.add_argument("--lr", type=float, default=lr, help="default: the dataset's preset" if not lr else None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=None, help="stop after an epoch once this much time passed")
    p.add_argument("--restart", action="store_true", help="ignore <out>.last.pt and start from scratch")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m retrieval", description="cirweb's composed image retrieval engine")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("bench-encode", help="CLIP encode throughput with random weights (same cost as trained)")
    p.add_argument("--arch", nargs="+", default=["RN50x4", "ViT-B/32"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--precision", nargs="+", default=["fp32", "auto"], help="fp32, bf16, int8, bf16-int8, auto")
    p.add_argument("--extract", type=int, default=0, help="also time a whole extraction of this many JPEG files")

    p = sub.add_parser("bench-turn", help="an in-process turn at real model size, beside the naive turn")
    p.add_argument("--arch", nargs="+", default=["RN50x4"])
    p.add_argument("--count", nargs="+", type=int, default=[100_000], help="collection sizes (e.g. 10000 1000000)")
    p.add_argument("--turns", type=int, default=200)
    p.add_argument("--exclude", type=int, default=50, help="ids the conversation has already shown")
    p.add_argument("--index", default="auto", choices=["auto", "flat", "ivf", "hnsw", "ivfpq"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "int8", "bf16-int8"])
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--totals", action="store_true", help="with --json, every turn's total (for the histogram)")

    p = sub.add_parser("bench-report", help="every benchmark, written as benchmarks.md with plots")
    p.add_argument("--preset", default="quick", choices=["full", "quick", "smoke"])
    p.add_argument("--out", default="docs", help="folder for benchmarks.md, benchmarks.json and the plots")
    p.add_argument("--render-only", action="store_true", help="redraw the page from OUT/benchmarks.json")

    p = sub.add_parser("bench-index", help="build time, memory, latency and recall of each index type")
    p.add_argument("--count", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=640)
    p.add_argument("--types", nargs="+", default=["flat", "ivf", "hnsw", "ivfpq"])
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--exclude", type=int, default=0, help="ids left out of each query, drawn from its neighbours")
    p.add_argument("--nlist", type=int, default=0, help="IVF lists (0: the default rule)")
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--nprobe", type=int, nargs="*", default=[], help="IVF settings to sweep")
    p.add_argument("--ef-search", type=int, nargs="*", default=[], help="HNSW settings to sweep")

    p = sub.add_parser("shapes", help="generate a shapes world in CIRR's layout")
    p.add_argument("--out", required=True)
    p.add_argument("--images", type=int, required=True, help="images in all (70%% train, 20%% val, 10%% test1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=128, help="picture side in pixels")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--render-splits", nargs="+", choices=["train", "val", "test1"], default=["train", "val", "test1"])
    p.add_argument("--render-families", type=int, default=None, help="draw only the first N families of a split")

    p = sub.add_parser("train-clip", help="stage 0: pretrain a tiny CLIP on a shapes world")
    p.add_argument("--root", required=True)
    _training_args(p, epochs=20, lr=1e-3)
    p.add_argument("--embed-dim", type=int, default=128)
    p.add_argument("--resolution", type=int, default=96)
    p.add_argument("--vision-width", type=int, default=8)

    p = sub.add_parser("train-default", help="all three stages for the offline default model (shapes world)")
    p.add_argument("--root", required=True, help="a shapes world (python -m retrieval shapes)")
    p.add_argument("--out", required=True, help="folder for shapes-clip.pt, shapes-combiner.pt, manifest.json")
    p.add_argument("--preset", choices=["full", "quick"], default="full")
    p.add_argument("--seed", type=int, default=0)

    for name, help_text in (
        ("finetune-clip", "stage 1: fine-tune CLIP on triplets with the element-wise sum (presets: CLIP4Cir's)"),
        ("train-combiner", "stage 2: train the Combiner on frozen CLIP features (presets: CLIP4Cir's)"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--dataset", required=True, help="cirr, fashioniq or shapes (each has its preset)")
        p.add_argument("--root", required=True)
        p.add_argument("--clip", required=True, help="CLIP model name or checkpoint path")
        _preprocessing_args(p)
        _training_args(p, epochs=None, lr=None)
        if name == "finetune-clip":
            p.add_argument("--groups-per-batch", type=int, default=None, help="img_sets per batch (default: preset)")
        else:
            p.add_argument("--batch-size", type=int, default=None, help="default: the dataset's preset")

    p = sub.add_parser("evaluate", help="Recall@K (and Recall_subset@K) of a model on a split")
    p.add_argument("--dataset", required=True, help="cirr, fashioniq or shapes")
    p.add_argument("--split", default="val")
    _model_args(p, ["combiner"])
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--plot", default=None, help="write a recall-vs-K plot (PNG) here")

    p = sub.add_parser("cirr-submission", help="write the two files CIRR's test server takes")
    p.add_argument("--dataset", default="cirr")
    p.add_argument("--split", default="test1")
    p.add_argument("--out", required=True)
    p.add_argument("--name", default="cirweb")
    _model_args(p, ["combiner"])

    p = sub.add_parser("simulate", help="multi-turn success of a simulated person, with baselines (shapes world)")
    p.add_argument("--split", default="val")
    p.add_argument("--turns", type=int, default=10)
    p.add_argument("--shown", type=int, default=10, help="results the person looks at each turn")
    p.add_argument("--limit", type=int, default=None, help="episodes to run (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--policies", nargs="+", choices=["random", "image", "text", "combiner", "memory"],
                   default=["random", "image", "text", "combiner", "memory"])  # fmt: skip
    p.add_argument("--siblings", choices=["both", "with", "without"], default="both",
                   help="galleries with the target family's one-edit stepping stones, without, or both")  # fmt: skip
    p.add_argument("--misread", type=float, default=0.10, help="chance of misreading each attribute")
    p.add_argument("--memory-weights", nargs="*", default=[], metavar="NAME=VALUE",
                   help="override retrieval.memory weights: requests, decay, chosen, rejected")  # fmt: skip
    p.add_argument("--out", default=None, help="also write the JSON here")
    p.add_argument("--tune", action="store_true", help="tune the memory weights on this split (use a train split)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (one is fastest for these tiny steps)")
    _model_args(p, ["combiner"])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except RetrievalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

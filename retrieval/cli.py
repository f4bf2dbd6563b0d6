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

from retrieval.arguments import MODES, build_parser
from retrieval.errors import DatasetError, RetrievalError

__all__ = ["MODES", "build_parser", "main"]
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
    from retrieval.benchmarks.throughput import bench_encode, bench_extract

    for arch in args.arch:
        for figures in bench_encode(arch, batch=args.batch, repeats=args.repeats, precisions=tuple(args.precision)):
            print(json.dumps(asdict(figures)), flush=True)
        if args.extract:
            extract = bench_extract(arch, images=args.extract, batch=args.batch, blocks=args.extract_blocks)
            print(json.dumps(asdict(extract)), flush=True)
    return 0


@command("bench-turn")
def _bench_turn(args: argparse.Namespace) -> int:
    """One line (or JSON object) per architecture and size: the turn's p50/p99 and stages, beside the naive turn."""
    from retrieval.benchmarks.turn_cost import bench_turn
    from retrieval.models.precision import Precision, compute_threads_set

    precision = None if args.precision == "auto" else Precision.named(args.precision)
    compute_threads_set(args.threads)  # both turns, fast and naive, with the threads a search worker has
    for arch in args.arch:
        for count in args.count:
            run = bench_turn(
                arch, count, turns=args.turns, excluded=args.exclude, index_type=args.index, precision=precision
            )
            figures = {**asdict(run), "threads": args.threads}
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
    from retrieval.benchmarks import report

    out = Path(args.out)
    if args.render_only or args.extract_only:
        figures = report.load(out / "benchmarks.json")
        figures = report.run_extract(figures, figures.preset) if args.extract_only else figures
    else:
        figures = report.run(args.preset)
    print(report.write(figures, out))
    return 0


@command("bench-index")
def _bench_index(args: argparse.Namespace) -> int:
    from retrieval.benchmarks.throughput import bench_index
    from retrieval.index.faiss_index import IndexParams

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


@command("train-open")
def _train_open(args: argparse.Namespace) -> int:
    from retrieval.training.open_train import OpenSettings
    from retrieval.training.recipe import train_open_stage

    settings = OpenSettings(steps=args.steps, max_minutes=args.max_minutes, lr_text=args.lr_text, unknown=args.unknown)
    manifest = train_open_stage(Path(args.root), Path(args.models), settings=settings, seed=args.seed)
    print(json.dumps(manifest["stage3"]))
    return 0


@command("train-judge")
def _train_judge(args: argparse.Namespace) -> int:
    from retrieval.training.judge_train import JudgeSettings
    from retrieval.training.recipe import train_judge_stage

    settings = JudgeSettings(
        steps=args.steps, max_minutes=args.max_minutes, lr=args.lr, descriptions=args.descriptions, unknown=args.unknown
    )
    start = Path(args.start) if args.start else None
    manifest = train_judge_stage(Path(args.root), Path(args.models), settings=settings, seed=args.seed, start=start)
    print(json.dumps({k: v for k, v in manifest["stage4"].items() if k != "history"}))
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
    from retrieval.models.provenance import recorded_preprocessing

    return "targetpad" if args.targetpad else args.preprocessing or recorded_preprocessing(args.clip)


def _load_models(args: argparse.Namespace) -> tuple[Any, Any]:
    from retrieval.fusion.fuser import Fuser
    from retrieval.models.clip_encoder import load_clip
    from retrieval.models.combiner_model import load_combiner
    from retrieval.models.precision import Precision

    combiner = load_combiner(args.combiner) if args.combiner and args.combiner != "sum" else None
    if combiner is None and "combiner" in args.mode:
        raise RetrievalError("mode 'combiner' needs a Combiner checkpoint: pass --combiner PATH (or --mode sum)")
    precision = None if args.precision == "auto" else Precision.named(args.precision)
    encoder = load_clip(args.clip, device=args.device, preprocessing=_preprocessing(args), precision=precision)
    return encoder, Fuser(combiner, encoder.dim, int8=encoder.precision.combiner == "int8")


def _provenance(args: argparse.Namespace, encoder: Any) -> dict[str, Any]:
    from retrieval.models.preprocessing import TargetPad
    from retrieval.models.provenance import provenance

    steps = getattr(encoder.preprocess, "transforms", [])
    kind = "targetpad" if any(isinstance(s, TargetPad) for s in steps) else "clip"
    combiner = args.combiner if args.combiner != "sum" else None
    return provenance(args.root, args.clip, combiner, kind)


@command("evaluate")
def _evaluate(args: argparse.Namespace) -> int:
    """Prints (or, with --json, one JSON object of) the metrics of the first mode at the top level, and every
    mode's metrics under "modes"."""
    from retrieval.datasets import load_dataset
    from retrieval.evaluation.recall import encode_gallery, evaluate_split, format_metrics, recall_plot
    from retrieval.fusion.fuser import Mode

    data = load_dataset(args.dataset, args.root, args.split)
    print(data.report(), file=sys.stderr)
    encoder, fuser = _load_models(args)
    modes = [Mode(m) for m in args.mode]
    per_mode: dict[str, dict[str, Any]] = {}
    gallery = encode_gallery(encoder, data.images) if args.dataset != "fashioniq" else None  # once for all modes
    for mode in modes:
        if args.dataset == "fashioniq":
            from retrieval.evaluation.fashioniq_recall import evaluate_fashioniq

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
    if args.open_requests:
        results["open_requests"] = _open_requests(args, encoder, fuser, data, gallery)
    if args.plot and args.dataset != "fashioniq":
        results["plot"] = str(recall_plot(per_mode, Path(args.plot)))
    if args.json:
        print(json.dumps(results))
    else:
        for mode in modes:
            print(f"{mode.value:>8}: {format_metrics(per_mode[mode.value])}")
        if args.open_requests:
            from retrieval.evaluation.open_requests import format_open

            print(format_open(results["open_requests"]))
    return 0


def _open_requests(args: argparse.Namespace, encoder: Any, fuser: Any, data: Any, gallery: Any) -> dict[str, Any]:
    from retrieval.datasets.shapes_world import load_scenes
    from retrieval.evaluation.open_requests import open_request_figures

    if args.dataset != "shapes":
        raise RetrievalError("--open-requests needs a shapes world (its scene graphs judge every result)")
    scenes = load_scenes(Path(args.root), args.split)
    judge, regions = None, None
    if args.judge:
        from retrieval.evaluation.judged import gallery_regions
        from retrieval.fusion.judging import stage_from
        from retrieval.models.judge import read_judge

        judge, regions = stage_from(read_judge(args.judge), encoder), gallery_regions(encoder, data, gallery)
    counts = {"requests": args.requests, "descriptions": args.descriptions, "seed": args.seed}
    return open_request_figures(encoder, fuser, data, scenes, gallery, judge=judge, regions=regions, **counts)


@command("cirr-submission")
def _cirr_submission(args: argparse.Namespace) -> int:
    from retrieval.datasets import load_dataset
    from retrieval.evaluation.submission import validate_cirr_submission, write_cirr_submission
    from retrieval.fusion.fuser import Mode

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

    from retrieval.evaluation.sim_user import UserModel
    from retrieval.evaluation.simulate import simulate
    from retrieval.fusion.memory import DEFAULT_WEIGHTS, MemoryWeights

    # Many tiny sequential steps: one thread is far faster on a shared machine (measured: 10 ms a text
    # with one thread, 160 ms with two, on 2 busy cores).
    torch.set_num_threads(args.threads)
    encoder, fuser = _load_models(args)
    weights = MemoryWeights(**{**DEFAULT_WEIGHTS.as_dict(), **dict(_weight(w) for w in args.memory_weights)})
    user = UserModel(misread=args.misread)
    siblings = {"both": (True, False), "with": (True,), "without": (False,)}[args.siblings]
    if args.tune:
        from retrieval.evaluation.simulate import load_world, tune

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

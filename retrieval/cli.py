"""The engine's command line. Each subcommand parses its arguments and calls one engine function;
errors the user can fix are printed as one sentence with exit status 2, never as a traceback."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict

from retrieval.errors import RetrievalError

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        COMMANDS[name] = fn
        return fn

    return register


@command("bench-encode")
def _bench_encode(args: argparse.Namespace) -> int:
    from retrieval.benchmarks import bench_encode

    for arch in args.arch:
        print(json.dumps(asdict(bench_encode(arch, batch=args.batch, repeats=args.repeats))), flush=True)
    return 0


@command("bench-index")
def _bench_index(args: argparse.Namespace) -> int:
    from retrieval.benchmarks import bench_index

    figures = bench_index(args.count, args.dim, args.types, queries=args.queries)
    print(json.dumps([asdict(f) for f in figures], indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m retrieval", description="cirweb's composed image retrieval engine")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("bench-encode", help="CLIP encode throughput with random weights (same cost as trained)")
    p.add_argument("--arch", nargs="+", default=["RN50x4", "ViT-B/32"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=1)

    p = sub.add_parser("bench-index", help="build time, memory, latency and recall of each index type")
    p.add_argument("--count", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=640)
    p.add_argument("--types", nargs="+", default=["flat", "ivf", "hnsw", "ivfpq"])
    p.add_argument("--queries", type=int, default=200)
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

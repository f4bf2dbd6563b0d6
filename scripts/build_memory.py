"""Peak memory of building one index version from a reindex's chunk files, the old way and the new way, side
by side on this machine (each in a fresh process; peak = the kernel's VmHWM, resident set high-water mark).

  old: what a reindex did before chunks were shared: every chunk loaded and concatenated, then
       write_version (a sorted copy, the whole collection normalized, the index, the exact copy).
  new: write_version_parts: one chunk at a time into features.npy, the index trained on a sample and
       filled block by block from the file.

    mkdir -p /tmp/old && git archive 765730c retrieval | tar -x -C /tmp/old
    .venv/bin/python scripts/build_memory.py --count 200000 --dim 640 --index-type ivf --old-code /tmp/old
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# the engine measured: this checkout's, or (old mode, --old-code) an export of the commit before chunks were shared
sys.path.insert(0, os.environ.get("BUILD_MEMORY_CODE") or str(Path(__file__).resolve().parents[1]))

CHUNK = 1024  # CIR_REINDEX_CHUNK's default


def write_chunks(folder: Path, count: int, dim: int) -> list[Path]:
    rng = np.random.default_rng(0)
    ids = rng.permutation(count * 2)[:count]  # image ids are not in extraction order
    paths = []
    for n, start in enumerate(range(0, count, CHUNK)):
        path = folder / f"chunk_{n:05d}.npz"
        features = rng.standard_normal((min(CHUNK, count - start), dim), dtype=np.float32)
        np.savez(path, ids=ids[start : start + CHUNK], features=features)
        paths.append(path)
    return paths


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def features_of(path: Path) -> np.ndarray:
    with np.load(path) as data:
        return np.asarray(data["features"], np.float32)


def build(mode: str, chunks: list[Path], out: Path, dim: int, index_type: str, nlist: int) -> dict[str, float]:
    from retrieval.index.faiss_index import IndexParams

    params = IndexParams(nlist=nlist)
    started = time.perf_counter()
    before = peak_rss_mib()
    if mode == "old":
        from retrieval.index.versions import write_version

        loaded = [np.load(p) for p in chunks]
        ids = np.concatenate([d["ids"] for d in loaded])
        features = np.concatenate([np.asarray(d["features"], np.float32) for d in loaded])
        written = write_version(out, ids, features, encoder="e", combiner="c", index_type=index_type, params=params)
    else:
        from retrieval.index.versions import FeaturePart, write_version_parts

        parts = []
        for p in chunks:
            with np.load(p) as data:
                parts.append(FeaturePart(np.asarray(data["ids"]), functools.partial(features_of, p)))
        written = write_version_parts(
            out, parts, dim=dim, encoder="e", combiner="c", index_type=index_type, params=params
        )
    return {
        "peak_mib": round(peak_rss_mib(), 1),
        "start_mib": round(before, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "count": written.meta.count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=640)
    parser.add_argument("--index-type", default="auto", choices=["auto", "flat", "ivf", "hnsw", "ivfpq"])
    parser.add_argument("--nlist", type=int, default=0, help="IVF lists (0: the default, 4·sqrt(count))")
    parser.add_argument(
        "--old-code",
        type=Path,
        help="a folder holding the engine as it was (git archive 765730c retrieval | tar -x -C DIR): the old "
        "mode runs that code, so the old figure is the old build's, not today's write_version",
    )
    parser.add_argument("--mode", choices=["old", "new"], help="(internal) run one build in this process")
    parser.add_argument("--chunks", type=Path, help="(internal) folder of chunk files")
    args = parser.parse_args()
    if args.mode:
        chunks = sorted(args.chunks.glob("chunk_*.npz"))
        out = Path(tempfile.mkdtemp(prefix=f"build-{args.mode}-", dir=args.chunks))
        print(json.dumps(build(args.mode, chunks, out, args.dim, args.index_type, args.nlist)))
        return
    with tempfile.TemporaryDirectory(prefix="build-memory-") as tmp:
        write_chunks(Path(tmp), args.count, args.dim)
        collection_mib = args.count * args.dim * 4 / 2**20
        rows = {}
        for mode in ("old", "new"):
            env = dict(os.environ)
            if mode == "old" and args.old_code:
                env["BUILD_MEMORY_CODE"] = str(args.old_code.resolve())
            done = subprocess.run(
                [sys.executable, __file__, "--mode", mode, "--chunks", tmp, *sys.argv[1:]],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            )
            rows[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{args.count} x {args.dim} float32 = {collection_mib:.0f} MiB, index type {args.index_type}")
        for mode, row in rows.items():
            grown = row["peak_mib"] - row["start_mib"]
            print(f"  {mode}: peak {row['peak_mib']:.0f} MiB = {row['start_mib']:.0f} at start (Python, numpy, torch, "
                  f"faiss) + {grown:.0f} for the build, {row['seconds']} s")  # fmt: skip
        old, new = (rows[m]["peak_mib"] - rows[m]["start_mib"] for m in ("old", "new"))
        print(f"  new/old, the build's own growth: {new / old:.2f}; whole peak: "
              f"{rows['new']['peak_mib'] / rows['old']['peak_mib']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()

"""Rows of a 2-d ``.npy`` file read with plain file reads, never a memory map.

A pass over a memory-mapped file larger than memory keeps every page it touched mapped into the process
until the map is dropped: its resident size grows to the whole file. Reading a block at a time into an
ordinary array keeps only that block, so an index build over millions of rows stays within a few blocks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format
from numpy.typing import NDArray

WINDOW_ROWS = 16384  # rows read at once when picking scattered rows (~40 MB of 640-d float32)


class RowFile:
    """A read-only view of a C-ordered 2-d ``.npy`` file: ``rows[a:b]`` and ``rows.take(indices)`` read
    exactly the rows asked for, as float32 arrays of their own."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with self.path.open("rb") as f:
            version = npy_format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"{path} is a .npy file of format {version}, which this reader does not know")
            read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            self.offset = f.tell()
        if len(shape) != 2 or fortran:
            raise ValueError(f"{self.path} does not hold a C-ordered 2-d array (shape {shape})")
        self.shape: tuple[int, int] = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return 2

    def __getitem__(self, rows: slice) -> NDArray[np.float32]:
        start, stop, step = rows.indices(self.shape[0])
        if step != 1:
            raise ValueError("RowFile reads contiguous rows only; use take() for others")
        count = max(stop - start, 0)
        row_bytes = self.shape[1] * self.dtype.itemsize
        with self.path.open("rb") as f:
            f.seek(self.offset + start * row_bytes)
            block = np.fromfile(f, dtype=self.dtype, count=count * self.shape[1])
        return np.asarray(block.reshape(count, self.shape[1]), np.float32)

    def take(self, indices: NDArray[np.int64]) -> NDArray[np.float32]:
        """The rows at `indices`, in the order given, reading the file once from front to back."""
        indices = np.asarray(indices, np.int64)
        out = np.empty((len(indices), self.shape[1]), np.float32)
        if not len(indices):
            return out
        order = np.argsort(indices, kind="stable")
        ordered = indices[order]
        if ordered[0] < 0 or ordered[-1] >= self.shape[0]:
            raise IndexError(f"row indices outside 0..{self.shape[0] - 1}")
        at = 0
        while at < len(ordered):
            start = int(ordered[at])
            end = int(np.searchsorted(ordered, start + WINDOW_ROWS, side="left"))
            window = self[start : int(ordered[end - 1]) + 1]
            out[order[at:end]] = window[ordered[at:end] - start]
            at = end
        return out

    def mapped(self) -> NDArray[np.float32]:
        """The whole file as a read-only memory map (for readers that touch few rows, such as re-ranking)."""
        return np.load(self.path, mmap_mode="r")  # type: ignore[no-any-return]

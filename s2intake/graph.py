"""The read layer of a stack's Dask graph: one fetch task per file, one read task per chunk.

Each fetch task (:func:`~s2intake.reader.fetch_file`) gets one asset's header and every tile
the stack's chunks need from it, in two HTTP requests; each read task
(:func:`~s2intake.reader.read_block`) decodes its chunk from the fetched tiles of that date's
files. :class:`ReadLayer` rebuilds the fetch tasks when Dask culls the graph, so computing a
slice of a stack (``ds.isel(...)``) fetches only the tiles of the chunks the slice needs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from typing import Any

from dask.highlevelgraph import MaterializedLayer

from .reader import ChunkTask, FileTask, fetch_file, read_block, read_pixels

Key = tuple[Any, ...]


class ReadLayer(MaterializedLayer):
    """Fetch and read tasks of one band, with a cull that trims what the fetches get.

    Parameters
    ----------
    fetches:
        ``{fetch key: FileTask}``; each task's ``windows`` lists every chunk that reads it.
    reads:
        ``{read key: (ChunkTask, fetch keys of its sources, in source order)}``.
    options_key:
        Graph key holding the stack's :class:`~s2intake.gdal_env.ReadOptions` (its own
        layer, :func:`options_layer`), passed to every fetch task. Depending on it also keeps
        this layer from being a root: Dask's ``fuse_roots`` would otherwise merge the band
        layers under ``to_rgb`` into one plain dict before culling, losing this cull.
    with_failures:
        The read tasks return ``(pixels, failed reads)`` (:func:`~s2intake.reader.read_block`,
        for ``on_error="nodata"``); otherwise the pixels alone
        (:func:`~s2intake.reader.read_pixels`): a failure raises, so there is nothing to
        report, and the array takes its chunks straight from the read tasks.
    """

    def __init__(self, fetches: Mapping[Key, FileTask],
                 reads: Mapping[Key, tuple[ChunkTask, tuple[Key, ...]]], options_key: str,
                 with_failures: bool = True) -> None:
        self.fetches = dict(fetches)
        self.reads = dict(reads)
        self.options_key = options_key
        self.with_failures = with_failures
        read: Callable[..., Any] = read_block if with_failures else read_pixels
        mapping: dict[Key, Any] = {key: (fetch_file, task, options_key)
                                   for key, task in self.fetches.items()}
        mapping.update({key: (read, task, *deps) for key, (task, deps) in self.reads.items()})
        super().__init__(mapping)

    def cull(self, keys: set[Key], all_hlg_keys: Collection[Key]
             ) -> tuple[ReadLayer, dict[Key, set[Key]]]:
        """Only the reads of ``keys``, and fetches of only the tiles those reads need."""
        wanted = {key for key in keys if key in self.reads}
        reads = self.reads if len(wanted) == len(self.reads) else \
            {key: self.reads[key] for key in wanted}
        fetches = self.fetches if reads is self.reads else self._trimmed(reads)
        layer = self if reads is self.reads else \
            ReadLayer(fetches, reads, self.options_key, self.with_failures)
        deps: dict[Key, set[Key]] = {key: {self.options_key} for key in fetches}
        deps.update({key: set(fetch_keys) for key, (_, fetch_keys) in reads.items()})
        return layer, deps

    def _trimmed(self, reads: Mapping[Key, tuple[ChunkTask, tuple[Key, ...]]]
                 ) -> dict[Key, FileTask]:
        windows: dict[Key, list[tuple[int, int, int, int]]] = {}
        for task, fetch_keys in reads.values():
            if not fetch_keys:
                continue
            window = chunk_window(task, self.fetches[fetch_keys[0]])
            for key in fetch_keys:
                windows.setdefault(key, []).append(window)
        return {key: replace(self.fetches[key], windows=tuple(found))
                for key, found in windows.items()}


def options_layer(options: Any, token: str) -> tuple[str, dict[str, Any]]:
    """``(key, layer)``: the one-task layer holding a stack's read options."""
    key = f"s2options-{token}"
    return key, {key: options}


def chunk_window(task: ChunkTask, file_task: FileTask) -> tuple[int, int, int, int]:
    """``(row0, row1, col0, col1)`` of a chunk on the stack's grid (that of ``file_task``)."""
    a, _, c, _, e, f = file_task.transform
    col0 = round((task.transform[2] - c) / a)
    row0 = round((task.transform[5] - f) / e)
    return row0, row0 + task.shape[0], col0, col0 + task.shape[1]

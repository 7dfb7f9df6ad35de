"""The hub's nearest-identity search: FAISS over the identities' global appearance vectors.

Exact inner product (``IndexFlatIP`` under :class:`ExactRows`: a changed identity's row is
rewritten in place and a removed one takes the last row, so a step costs what it changed, not the
gallery's size) while the gallery is small; past ``approximate_above``
identities an inverted-file index (``IndexIVFFlat``, ``nlist`` about sqrt(N) lists, ``nprobe``
of them searched) trained on the gallery at that moment and retrained when it has grown 4x.
Vectors are L2-normalised, so inner product is cosine. The gallery only *proposes* candidates:
the identity engine scores them with every rule (``IdentityEngine(candidates=...)``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any, Optional

import numpy as np

log = logging.getLogger(__name__)


def _import_faiss():
    """``import faiss`` without its loader's INFO lines: it tries the AVX512 and AVX2 builds first
    and logs each one the wheel lacks with a ``ModuleNotFoundError`` (noise for an operator; a
    real failure is still raised, and logged by the loader at ERROR)."""
    loader = logging.getLogger("faiss.loader")
    level = loader.level
    loader.setLevel(logging.WARNING)
    try:
        import faiss as module
    finally:
        loader.setLevel(level)
    return module


faiss = _import_faiss()


def faiss_build() -> str:
    """The FAISS a gallery searches with: its version and the SIMD level it dispatches to on this
    CPU. Another one may sum inner products in another order and rank near-ties otherwise, so a
    region's hubs, which must decide alike, check that theirs is the same."""
    simd = getattr(faiss, "SIMDConfig", None)
    level = simd.get_level_name() if simd is not None else faiss.get_compile_options()
    return f"faiss {faiss.__version__} {level}"


class ExactRows:
    """An exact inner-product index (``IndexFlatIP``) with the ids kept here, row by row. FAISS's
    own id map removes by moving every vector after the removed one (38 MB at 30 000 identities of
    320 floats, each step); here a replaced vector is rewritten in its row and a removed row takes
    the last one, so an update costs its own size."""

    def __init__(self, dim: int):
        self.dim = dim
        self.index = faiss.IndexFlatIP(dim)
        self.ids = np.zeros(0, np.int64)  # row -> id
        self.row: dict[int, int] = {}  # id -> row

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def vectors(self) -> np.ndarray:
        """The index's own storage, [N, dim] (writing to it changes the index)."""
        n = self.ntotal
        if not n:
            return np.zeros((0, self.dim), np.float32)
        return faiss.rev_swig_ptr(self.index.get_xb(), n * self.dim).reshape(n, self.dim)

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        last = {int(g): i for i, g in enumerate(ids)}  # an id twice: its last vector
        new = [(g, i) for g, i in last.items() if g not in self.row]
        stored = self.vectors()
        for g, i in last.items():
            if g in self.row:
                stored[self.row[g]] = vectors[i]
        if new:
            first = self.ntotal
            self.index.add(np.ascontiguousarray(vectors[[i for _, i in new]]))
            self.ids = np.concatenate([self.ids, np.asarray([g for g, _ in new], np.int64)])
            self.row.update({g: first + k for k, (g, _) in enumerate(new)})

    def remove(self, ids: Iterable[int]) -> None:
        for g in ids:
            r = self.row.pop(int(g), None)
            if r is None:
                continue
            last = self.ntotal - 1
            if r != last:  # the last row fills the hole
                stored = self.vectors()
                stored[r] = stored[last]
                moved = int(self.ids[last])
                self.ids[r], self.row[moved] = moved, r
            self.index.remove_ids(faiss.IDSelectorRange(last, last + 1))  # the tail: nothing moves
            self.ids = self.ids[:last]

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, rows = self.index.search(q, k)
        return scores, np.where(rows >= 0, self.ids[np.maximum(rows, 0)], -1)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "index": faiss.serialize_index(self.index)}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, index=faiss.deserialize_index(state["index"]))


class Gallery:
    """Global ids -> unit vectors, searchable by inner product; ids are int64."""

    def __init__(self, dim: int, approximate_above: int = 50000, nprobe: int = 16):
        self.dim = dim
        self.approximate_above = approximate_above
        self.nprobe = nprobe
        self.approximate = False
        self._trained_at = 0
        self._index: Any = ExactRows(dim)  # or, past approximate_above, an IndexIVFFlat

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def __getstate__(self) -> dict:
        """Pickled with its index as FAISS writes it: the same vectors in the same order, so a
        hub loaded from a checkpoint breaks ties among candidates as the one that wrote it."""
        state = self.__dict__.copy()
        if self.approximate:
            state["_index"] = faiss.serialize_index(self._index)
        return state

    def __setstate__(self, state: dict) -> None:
        index = state.pop("_index")
        if state["approximate"]:
            index = faiss.deserialize_index(index)
            index.nprobe = min(state["nprobe"], index.nlist)  # a search setting: not in the file
        self.__dict__.update(state, _index=index)

    @property
    def kind(self) -> str:
        return "ivf" if self.approximate else "exact"

    def upsert(self, ids: Iterable[int], vectors: np.ndarray, gone: Iterable[int] = ()) -> None:
        """Add or replace the vectors of ``ids`` ([N, dim], normalised here), and remove ``gone``
        in the same pass (a removal from the exact index reads every vector: once a step, not twice)."""
        ids = np.asarray(list(ids), np.int64)
        gone_ids = np.asarray(list(gone), np.int64)
        self.remove(np.concatenate([ids, gone_ids]) if self.approximate else gone_ids)
        if not len(ids):
            return
        v = np.ascontiguousarray(vectors, np.float32).reshape(len(ids), self.dim)
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        if self.approximate:
            self._index.add_with_ids(v, ids)
        else:
            self._index.upsert(ids, v)  # a known id's row rewritten in place
        self._maybe_rebuild()

    def remove(self, ids: Iterable[int]) -> None:
        ids = np.ascontiguousarray(np.asarray(list(ids), np.int64))
        if not (len(ids) and len(self)):
            return
        if self.approximate:  # found through its hashtable (which takes an array selector)
            self._index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids)))
        else:
            self._index.remove(ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores [Q, k], ids [Q, k]) best first; missing neighbours have id -1."""
        q = np.ascontiguousarray(queries, np.float32).reshape(-1, self.dim)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        if not len(self):
            return np.zeros((len(q), k), np.float32), np.full((len(q), k), -1, np.int64)
        return self._index.search(q, k)

    def _maybe_rebuild(self) -> None:
        n = len(self)
        if n > self.approximate_above and (not self.approximate or n >= 4 * self._trained_at):
            self.rebuild(approximate=True)

    def rebuild(self, approximate: bool) -> None:
        """Move every vector into a new index (an IVF trained on them, or an exact one)."""
        ids, vectors = self._contents()
        if approximate:
            nlist = max(1, int(math.sqrt(len(ids))))
            quantizer = faiss.IndexFlatIP(self.dim)
            ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            train = (
                vectors
                if len(vectors) <= 64 * nlist
                else vectors[np.random.default_rng(0).choice(len(vectors), 64 * nlist, replace=False)]
            )  # 39..256 per list is what FAISS asks
            ivf.train(train)
            ivf.nprobe = min(self.nprobe, nlist)
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # remove/replace by id
            index = ivf
            self._trained_at = len(ids)
            log.info("gallery: %d identities, approximate index IVF%d (nprobe %d)", len(ids), nlist, ivf.nprobe)
            index.add_with_ids(vectors, ids)
        else:
            index = ExactRows(self.dim)
            index.upsert(ids, vectors)
        self._index, self.approximate = index, approximate

    def _contents(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.approximate:
            ids, vectors = self._index.ids.copy(), self._index.vectors().copy()
        else:
            invlists = self._index.invlists
            ids_parts, vec_parts = [], []
            for lst in range(self._index.nlist):
                size = invlists.list_size(lst)
                if size:
                    ids_parts.append(faiss.rev_swig_ptr(invlists.get_ids(lst), size).copy())
                    vec_parts.append(
                        faiss.rev_swig_ptr(invlists.get_codes(lst), size * self.dim * 4)
                        .view(np.float32)
                        .reshape(size, self.dim)
                        .copy()
                    )
            ids = np.concatenate(ids_parts) if ids_parts else np.zeros(0, np.int64)
            vectors = np.concatenate(vec_parts) if vec_parts else np.zeros((0, self.dim), np.float32)
        return ids, np.ascontiguousarray(vectors, np.float32)


def exact_neighbours(gallery: Gallery, queries: np.ndarray, k: int) -> np.ndarray:
    """Ids of the exact top ``k`` (the recall reference for the approximate index)."""
    ids, vectors = gallery._contents()
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(gallery.dim))
    flat.add_with_ids(vectors, ids)
    q = np.ascontiguousarray(queries, np.float32)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    return flat.search(q, k)[1]


def candidates_for(gallery: Gallery, appearance: list[Optional[np.ndarray]], k: int) -> list[set[int]]:
    """Per query vector (or None), the ids of its ``k`` nearest identities."""
    out: list[set[int]] = [set() for _ in appearance]
    given = [(i, a) for i, a in enumerate(appearance) if a is not None]
    rows = [i for i, _ in given]
    if rows:
        _, ids = gallery.search(np.stack([a for _, a in given]), k)
        for r, found in zip(rows, ids):
            out[r] = {int(g) for g in found if g >= 0}
    return out

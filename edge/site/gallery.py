"""The hub's nearest-identity search: FAISS over the identities' global appearance vectors.

Exact inner product (``IndexFlatIP``) while the gallery is small; past ``approximate_above``
identities an inverted-file index (``IndexIVFFlat``, ``nlist`` about sqrt(N) lists, ``nprobe``
of them searched) trained on the gallery at that moment and retrained when it has grown 4x.
Vectors are L2-normalised, so inner product is cosine. The gallery only *proposes* candidates:
the identity engine scores them with every rule (``IdentityEngine(candidates=...)``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Optional

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


class Gallery:
    """Global ids -> unit vectors, searchable by inner product; ids are int64."""

    def __init__(self, dim: int, approximate_above: int = 50000, nprobe: int = 16):
        self.dim = dim
        self.approximate_above = approximate_above
        self.nprobe = nprobe
        self.approximate = False
        self._trained_at = 0
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def __getstate__(self) -> dict:
        """Pickled with its index as FAISS writes it: the same vectors in the same order, so a
        hub loaded from a checkpoint breaks ties among candidates as the one that wrote it."""
        state = self.__dict__.copy()
        state["_index"] = faiss.serialize_index(self._index)
        return state

    def __setstate__(self, state: dict) -> None:
        index = faiss.deserialize_index(state.pop("_index"))
        if isinstance(index, faiss.IndexIVF):
            index.nprobe = min(state["nprobe"], index.nlist)  # a search setting: not in the file
        self.__dict__.update(state, _index=index)

    @property
    def kind(self) -> str:
        return "ivf" if self.approximate else "exact"

    def upsert(self, ids: Iterable[int], vectors: np.ndarray) -> None:
        """Add or replace the vectors of ``ids`` ([N, dim], normalised here)."""
        ids = np.asarray(list(ids), np.int64)
        if not len(ids):
            return
        v = np.ascontiguousarray(vectors, np.float32).reshape(len(ids), self.dim)
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        self.remove(ids)
        self._index.add_with_ids(v, ids)
        self._maybe_rebuild()

    def remove(self, ids: Iterable[int]) -> None:
        ids = np.asarray(list(ids), np.int64)
        if len(ids) and len(self):
            ids = np.ascontiguousarray(ids)
            self._index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids)))

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
        else:
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        index.add_with_ids(vectors, ids)
        self._index, self.approximate = index, approximate

    def _contents(self) -> tuple[np.ndarray, np.ndarray]:
        n = len(self)
        if isinstance(self._index, faiss.IndexIDMap2):
            ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            vectors = self._index.index.reconstruct_n(0, n) if n else np.zeros((0, self.dim), np.float32)
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

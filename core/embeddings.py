"""The embedding contract shared by evaluation, export parity checks and the edge runtime.

Every backend returns :class:`Embeddings` for a batch of crops, and :func:`similarity` is the one
way to compare two sets, so offline mAP and online cross-camera matching agree.
This module depends on numpy only: the edge imports it without training code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


def l2_normalize(x: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), eps)


@dataclass
class Embeddings:
    """Embeddings of B crops.

    global_: [B, D] L2-normalised.
    parts:   [B, P, Dp] L2-normalised part (region) features, for part-based methods.
    part_conf: [B, P] in [0, 1]: how visible/reliable each part is.

    Normalisation has one owner per source, and happens once: a model's outputs are normalised by
    the model (``Inference.normalized``, which the exported graph runs too; the edge checks it at
    load); vectors made here (means of several crops) and third-party models' outputs go through
    :meth:`normalized`. The constructor checks shapes only.
    """

    global_: np.ndarray
    parts: Optional[np.ndarray] = None
    part_conf: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.global_ = np.asarray(self.global_, dtype=np.float32)
        if self.global_.ndim != 2:
            raise ValueError(f"global embeddings must be [B, D], got shape {self.global_.shape}")
        if (self.parts is None) != (self.part_conf is None):
            raise ValueError("parts and part_conf come together")
        if self.parts is not None:
            self.parts = np.asarray(self.parts, dtype=np.float32)
            self.part_conf = np.clip(np.asarray(self.part_conf, dtype=np.float32), 0.0, 1.0)
            b, p = self.parts.shape[:2]
            if self.part_conf.shape != (b, p) or b != len(self):
                raise ValueError(
                    f"parts {self.parts.shape} / part_conf {self.part_conf.shape} do not match {len(self)} crops"
                )

    @classmethod
    def normalized(
        cls, global_: np.ndarray, parts: Optional[np.ndarray] = None, part_conf: Optional[np.ndarray] = None
    ) -> Embeddings:
        """Embeddings from vectors that are not unit length yet (averages, third-party models)."""
        return cls(l2_normalize(global_), None if parts is None else l2_normalize(parts), part_conf)

    def __len__(self) -> int:
        return self.global_.shape[0]

    @property
    def dim(self) -> int:
        return self.global_.shape[1]

    def __getitem__(self, index) -> Embeddings:
        idx = np.atleast_1d(np.arange(len(self))[index])
        if self.parts is None or self.part_conf is None:  # both or neither (__post_init__)
            return Embeddings(self.global_[idx])
        return Embeddings(self.global_[idx], self.parts[idx], self.part_conf[idx])

    @staticmethod
    def concat(items: list[Embeddings]) -> Embeddings:
        if not items:
            raise ValueError("nothing to concatenate")
        g = np.concatenate([e.global_ for e in items])
        if items[0].parts is None:
            return Embeddings(g)
        parts, confs = [], []
        for e in items:
            if e.parts is None or e.part_conf is None:
                raise ValueError("cannot concatenate embeddings with parts and without")
            parts.append(e.parts)
            confs.append(e.part_conf)
        return Embeddings(g, np.concatenate(parts), np.concatenate(confs))


def weighted_mean(items: Embeddings, weights: np.ndarray) -> Embeddings:
    """One appearance from several crops of a person: the weighted mean of the global features
    and, per part, of the part features weighted by ``weight * part_conf`` (a part counts where it
    was visible), with the part confidences' weighted mean."""
    w = np.asarray(weights, np.float32)
    g = (w[:, None] * items.global_).sum(0, keepdims=True)
    if items.parts is None or items.part_conf is None:  # both or neither (__post_init__)
        return Embeddings.normalized(g)
    pw = w[:, None] * items.part_conf  # [N, P]
    parts = (pw[..., None] * items.parts).sum(0, keepdims=True)
    conf = (w[:, None] * items.part_conf).sum(0, keepdims=True) / max(float(w.sum()), 1e-12)
    return Embeddings.normalized(g, parts, conf)


def similarity(a: Embeddings, b: Embeddings) -> np.ndarray:
    """Cosine similarity [len(a), len(b)] in [-1, 1].

    With parts, each part's cosine counts with weight ``conf_a * conf_b`` (a part only matters
    where both crops show it) next to the global cosine with weight 1:
    ``(cos_g + sum_p w_p cos_p) / (1 + sum_p w_p)``.
    """
    sim = a.global_ @ b.global_.T
    if a.parts is None or b.parts is None or a.part_conf is None or b.part_conf is None:
        return sim
    part_sim = np.einsum("ipd,jpd->ijp", a.parts, b.parts)
    weight = a.part_conf[:, None, :] * b.part_conf[None, :, :]
    return (sim + (weight * part_sim).sum(-1)) / (1.0 + weight.sum(-1))


def distance(a: Embeddings, b: Embeddings) -> np.ndarray:
    """Cosine distance ``1 - similarity`` in [0, 2]; what ranking and re-ranking consume.

    Clipped at 0: rounding makes ``1 - cos(x, x)`` slightly negative, which re-ranking rejects.
    """
    return np.clip(1.0 - similarity(a, b), 0.0, 2.0)

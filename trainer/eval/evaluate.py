"""Evaluating a model on a dataset's query/gallery split, and writing the report."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from core.embeddings import Embeddings, distance  # noqa: E402
from core.progress import progress as progress_bar  # noqa: E402
from trainer.config import EvalConfig  # noqa: E402
from trainer.eval.metrics import RankResult, evaluate_rank  # noqa: E402
from trainer.eval.rerank import re_ranking  # noqa: E402

if TYPE_CHECKING:
    from trainer.models.reid import CLIPReID

log = logging.getLogger(__name__)


@torch.no_grad()
def extract_features(
    model: CLIPReID, loader: DataLoader, device: torch.device, flip: bool = False, progress: bool = True
) -> tuple[Embeddings, np.ndarray, np.ndarray]:
    """-> (embeddings of N images, pids [N], camids [N]); ``flip`` averages with the mirror image.

    Part-based methods' part features and confidences come along, so ranking uses the same
    confidence-weighted :func:`~core.embeddings.similarity` as the edge.
    """
    from trainer.models.reid import to_embeddings

    model.eval()
    feats, pids, camids = [], [], []
    for images, pid, camid, _ in progress_bar(loader, "features", enabled=progress, leave=False):
        images, cams = images.to(device), camid.to(device)
        out = model.infer(images, cams)
        if flip:
            out = out.averaged_with(model.infer(torch.flip(images, dims=[3]), cams))
        feats.append(to_embeddings(out))
        pids.append(pid)
        camids.append(camid)
    return Embeddings.concat(feats), torch.cat(pids).numpy(), torch.cat(camids).numpy()


def squared_euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.maximum(d, 0)


def distance_matrices(q: Embeddings | np.ndarray, g: Embeddings | np.ndarray, cfg: EvalConfig) -> np.ndarray:
    """[Q, G] distances for ranking (cosine: ``1 - similarity``; euclidean: squared, on the
    normalised global features), re-ranked when ``cfg.rerank``."""
    q = q if isinstance(q, Embeddings) else Embeddings.normalized(q)
    g = g if isinstance(g, Embeddings) else Embeddings.normalized(g)
    if not cfg.use_parts:
        q, g = Embeddings(q.global_), Embeddings(g.global_)
    if cfg.distance == "cosine":
        pair = distance
    else:

        def pair(a: Embeddings, b: Embeddings) -> np.ndarray:
            return squared_euclidean(a.global_, b.global_)

    qg = pair(q, g)
    if not cfg.rerank:
        return qg
    return re_ranking(qg, pair(q, q), pair(g, g), cfg.k1, cfg.k2, cfg.lambda_value)


def evaluate_features(q: tuple, g: tuple, cfg: EvalConfig) -> RankResult:
    (qf, qp, qc), (gf, gp, gc) = q, g
    return evaluate_rank(distance_matrices(qf, gf, cfg), qp, gp, qc, gc, cfg.max_rank)


def evaluate_model(
    model: CLIPReID,
    query_loader: DataLoader,
    gallery_loader: DataLoader,
    cfg: EvalConfig,
    device: torch.device,
    progress: bool = True,
) -> RankResult:
    q = extract_features(model, query_loader, device, cfg.flip, progress)
    g = extract_features(model, gallery_loader, device, cfg.flip, progress)
    return evaluate_features(q, g, cfg)


def plot_cmc(curves: dict[str, np.ndarray], path: Path, title: str = "CMC") -> Path:
    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    for label, cmc in curves.items():
        ranks = np.arange(1, len(cmc) + 1)
        ax.plot(ranks, 100 * np.asarray(cmc), marker="o", markersize=3, label=label)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_ylim(0, 101)
    ax.set_xscale("log")
    ticks = [t for t in (1, 5, 10, 20, 50, 100) if t <= max(len(c) for c in curves.values())]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(
    result: RankResult, out_dir: Path, name: str = "eval", meta: Optional[dict[str, Any]] = None
) -> dict[str, Path]:
    """``<name>.json`` (all metrics + meta) and ``<name>_cmc.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {**result.as_dict(), **(meta or {})}
    json_path = out_dir / f"{name}.json"
    json_path.write_text(json.dumps(payload, indent=2))
    png = plot_cmc({name: result.cmc}, out_dir / f"{name}_cmc.png", title=f"CMC ({name})")
    return {"json": json_path, "png": png}


def format_result(result: RankResult, label: str = "") -> str:
    head = f"{label}: " if label else ""
    return (
        f"{head}mAP {100 * result.mAP:.1f}  R1 {100 * result.rank(1):.1f}  R5 {100 * result.rank(5):.1f}  "
        f"R10 {100 * result.rank(10):.1f}  mINP {100 * result.mINP:.1f}  "
        f"({result.num_valid} queries, {result.num_skipped} without a match skipped)"
    )

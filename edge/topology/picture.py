"""The learned topology drawn: a graph of the cameras (arrows for walks with their windows and
evidence, dashed lines for overlapping views), and each camera's image (its first frame when it
can be read) with the foot points where people left (red) and came in (green) and the doors
drawn around them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from edge.topology.links import Topology


def draw_topology(
    topology: Topology, cameras: list[str], out: Path, frames: Optional[dict[str, np.ndarray]] = None
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = frames or {}
    n = max(len(cameras), 1)
    fig = plt.figure(figsize=(4.2 * max(n, 2), 8.5))
    graph = fig.add_subplot(2, 1, 1)
    _graph(graph, topology, cameras)
    for i, cam in enumerate(cameras):
        ax = fig.add_subplot(2, n, n + i + 1)
        _camera(ax, topology, cam, frames.get(cam))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _graph(ax, topology: Topology, cameras: list[str]) -> None:
    angle = np.linspace(0, 2 * np.pi, len(cameras), endpoint=False) + np.pi / 2
    pos = {c: np.array([np.cos(a), np.sin(a)]) for c, a in zip(cameras, angle)}
    for (one, other), count in topology.overlaps.items():
        if one in pos and other in pos:
            ax.plot(*zip(pos[one], pos[other]), "--", color="tab:blue", lw=2)
            mid = (pos[one] + pos[other]) / 2
            side = np.array([-(pos[other] - pos[one])[1], (pos[other] - pos[one])[0]]) * 0.18
            ax.text(*(mid - side), f"overlap\n{count} at once", color="tab:blue", ha="center", va="center", fontsize=9)
    for k in topology.links:
        if k.src not in pos or k.dst not in pos:
            continue
        a, b = pos[k.src], pos[k.dst]
        normal = np.array([-(b - a)[1], (b - a)[0]]) * 0.06  # the two directions side by side
        ax.annotate(
            "",
            xy=b * 0.82 + a * 0.18 + normal,
            xytext=a * 0.82 + b * 0.18 + normal,
            arrowprops={"arrowstyle": "-|>", "color": "tab:red", "lw": 1.8},
        )
        label = f"{k.min_s:g}-{k.max_s:g} s\n({k.walks} walks, median {k.transit_s[1]:g} s)"
        at = a * 0.68 + b * 0.32 + normal * 4.0  # beside its own arrow, near its start
        ax.text(*at, label, color="tab:red", ha="center", va="center", fontsize=7.5)
    for cam, p in pos.items():
        ax.add_patch(_box(p))
        ax.text(*p, cam, ha="center", va="center", fontsize=12, weight="bold")
    ax.set_xlim(-1.6, 1.6)
    ax.set_ylim(-1.4, 1.4)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"learned from {topology.sightings} confident sightings")


def _box(p: np.ndarray):
    from matplotlib.patches import FancyBboxPatch

    return FancyBboxPatch(
        (float(p[0]) - 0.22, float(p[1]) - 0.12), 0.44, 0.24, boxstyle="round,pad=0.02", fc="white", ec="black"
    )


def _camera(ax, topology: Topology, cam: str, frame: Optional[np.ndarray]) -> None:
    if frame is not None:
        ax.imshow(frame[..., ::-1])
    exits, entries = [], []
    for k in topology.links:
        if k.src == cam:
            _door(ax, k.exit, k.exits, "tab:red")
            exits.append(k.dst)
        if k.dst == cam:
            _door(ax, k.entry, k.entries, "tab:green")
            entries.append(k.src)
    if frame is None:
        ax.invert_yaxis()
    else:  # doors may reach past the image edge: show the image
        ax.set_xlim(0, frame.shape[1])
        ax.set_ylim(frame.shape[0], 0)
    doors = [f"leave to {', '.join(exits)} (red)"] if exits else []
    doors += [f"come from {', '.join(entries)} (green)"] if entries else []
    ax.set_title(cam + ("\n" + "; ".join(doors) if doors else ""), fontsize=9)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=7)


def _door(ax, polygon: Optional[np.ndarray], points: np.ndarray, colour: str) -> None:
    if len(points):
        ax.scatter(points[:, 0], points[:, 1], s=10, color=colour, alpha=0.7)
    if polygon is not None:
        closed = np.vstack([polygon, polygon[:1]])
        ax.plot(closed[:, 0], closed[:, 1], color=colour, lw=1.5)

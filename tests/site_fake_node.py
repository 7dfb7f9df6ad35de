"""A site node without cameras, for tests: people with fixed appearances walk through this node's
cameras; their tracklet summaries go to the hub through the real :class:`edge.site.node.SiteEngine`.

``python tests/site_fake_node.py --hub tcp://127.0.0.1:P --node a --camera cam1 --people 0 1 --out ids.json``
Every step (0.1 s of scene time, paced in real time unless --fast) the site ids the node holds are
written to ``--out`` (atomically), so a test can read them even after killing the process.
Person p's appearance is a fixed random unit vector (seed p) of the model's size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.embeddings import Embeddings  # noqa: E402
from edge.identity import TrackletSummary  # noqa: E402
from edge.site.config import SiteConfig  # noqa: E402
from edge.site.node import HubRefused, SiteEngine  # noqa: E402
from edge.wire.curve import CurveClient  # noqa: E402
from edge.wire.site_protocol import model_id  # noqa: E402

MODEL = Path(__file__).resolve().parents[1] / "edge" / "demo_models" / "reid.onnx"


def person(p: int, dim: int) -> np.ndarray:
    v = np.random.default_rng(1000 + p).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def local_engine(dim: int):
    """What edge.run gives a node for hub outages: the identity engine with the model's settings."""
    from core.model_card import read_onnx_metadata
    from edge.identity import IdentityEngine
    from edge.identity.config import MatchingConfig
    from edge.identity.engine import settings_from_config

    settings = settings_from_config(MatchingConfig(), read_onnx_metadata(str(MODEL)).similarity, str(MODEL), dim)
    return lambda: IdentityEngine(settings)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hub", required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--camera", required=True)
    ap.add_argument("--people", type=int, nargs="+", required=True)
    ap.add_argument("--steps", type=int, default=30, help="steps each person is seen, then their tracklet ends")
    ap.add_argument(
        "--late",
        type=int,
        nargs="*",
        default=[],
        help="people seen only in the last step (their decisions come during flush)",
    )
    ap.add_argument("--hold", type=float, default=0.0, help="then keep running (heartbeats only) this many seconds")
    ap.add_argument("--first-id", type=int, default=1, help="first local id")
    ap.add_argument("--out", required=True)
    ap.add_argument("--dim", type=int, default=320)
    ap.add_argument("--model-id", default=None)
    ap.add_argument("--secret-key", default=None)
    ap.add_argument("--server-key", default=None)
    ap.add_argument("--flush-timeout", type=float, default=5.0)
    ap.add_argument(
        "--local",
        action="store_true",
        help="decide with the node's own engine while the hub is away (as edge.run does)",
    )
    args = ap.parse_args()
    curve = CurveClient(secret_key=args.secret_key, server_key=args.server_key) if args.secret_key else None
    cfg = SiteConfig(
        node=args.node,
        hub=args.hub,
        curve=curve,
        heartbeat_s=0.2,
        hub_timeout_s=1.0,
        flush_timeout_s=args.flush_timeout,
    )
    engine = SiteEngine(
        cfg,
        [args.camera],
        args.model_id or model_id(MODEL),
        args.dim,
        local=local_engine(args.dim) if args.local else None,
    )
    start = time.time()
    first = {p: None for p in args.people}
    box = np.array([10.0, 10.0, 50.0, 120.0])

    def dump(extra: dict | None = None) -> None:
        data = {
            "ids": {f"{c}/{lid}": gid for (c, lid), gid in engine._ids.items()},
            "refused": engine.refused,
            "connected": engine.connected,
            "stats": engine.stats,
            "session": engine.session,
            **(extra or {}),
        }
        tmp = args.out + ".tmp"
        Path(tmp).write_text(json.dumps(data))
        os.replace(tmp, args.out)

    try:
        for k in range(args.steps + 1):
            now = start + 0.1 * k
            summaries = []
            for i, p in enumerate(args.people):
                lid = args.first_id + i
                first[p] = first[p] if first[p] is not None else now
                summaries.append(
                    TrackletSummary(
                        args.camera,
                        lid,
                        first[p],
                        min(now, start + 0.1 * (args.steps - 1)),
                        Embeddings(person(p, args.dim)[None]),
                        k + 1,
                        float(k + 1),
                        box,
                        box,
                        None,
                        k == args.steps,
                    )
                )
            if k == args.steps:
                late_box = box + np.array([300.0, 0.0, 300.0, 0.0])  # elsewhere: nobody's track it continues
                for i, p in enumerate(args.late):
                    summaries.append(
                        TrackletSummary(
                            args.camera,
                            args.first_id + len(args.people) + i,
                            now,
                            now,
                            Embeddings(person(p, args.dim)[None]),
                            1,
                            1.0,
                            late_box,
                            late_box,
                            None,
                            True,
                        )
                    )
            engine.update(summaries, now)
            dump()
            time.sleep(max(0.0, now + 0.1 - time.time()))
        deadline = time.time() + args.hold
        while time.time() < deadline:
            engine.update([], time.time())
            dump()
            time.sleep(0.1)
        flushed = [[d.kind, d.global_id, f"{d.key[0]}/{d.key[1]}"] for d in engine.flush() if d.key is not None]
        dump(
            {
                "final": {f"{c}/{lid}": gid for (c, lid), gid in engine.take_final()},
                "flushed": flushed,
                "report": engine.report(),
            }
        )
    except HubRefused as exc:
        dump()
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    finally:
        engine.close()


if __name__ == "__main__":
    main()

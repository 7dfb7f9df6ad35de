"""Site hub benchmark: FAISS nearest-identity search and the hub's summary throughput.

    python scripts/bench_hub.py --out docs/bench/hub.json

1. *Gallery search*: galleries of 1k, 10k, 100k and 1M identities (clustered synthetic appearance
   vectors: people fall into look-alike groups, as real embeddings do), queried one tracklet at a
   time (as the hub asks) with a new noisy sighting of a gallery identity. Latency p50 / p99 of
   exact inner product (``IndexFlatIP``) and of the approximate index the hub switches to
   (``IndexIVFFlat``, sqrt(N) lists, ``nprobe`` 16), and the approximate index's recall@1 and
   recall@10 against exact search.
2. *Hub throughput*: the hub's engine step (decode done, engine update, FAISS candidates, SQLite
   commit, gallery update) fed with synthetic tracklet summaries from 4 cameras, 24 live
   tracklets at a time, with a gallery of N past identities (alive: last seen within the time
   to live); summaries per second sustained. The same through a stream region hub's step
   (decoding the message included), scoring every identity and with the FAISS candidates.

Prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.embeddings import Embeddings  # noqa: E402
from edge.identity import Identity  # noqa: E402
from edge.site.gallery import Gallery  # noqa: E402

MODEL = ROOT / "edge" / "demo_models" / "reid.onnx"


def clustered(n: int, dim: int, rng: np.random.Generator, groups: int = 2000, spread: float = 0.5) -> np.ndarray:
    centres = rng.normal(size=(groups, dim)).astype(np.float32)
    v = centres[rng.integers(0, groups, n)] + spread * rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def percentiles(ms: list[float]) -> dict:
    return {"p50": round(float(np.percentile(ms, 50)), 3), "p99": round(float(np.percentile(ms, 99)), 3)}


def bench_search(n: int, dim: int, queries: int, nprobe: int, rng: np.random.Generator) -> dict:
    data = clustered(n, dim, rng)
    ids = np.arange(1, n + 1)
    pick = rng.integers(0, n, queries)
    q = data[pick] + 0.03 * rng.normal(size=(queries, dim)).astype(
        np.float32
    )  # a new sighting: noise 0.03 per component
    exact = Gallery(dim, approximate_above=10**12)
    t0 = time.perf_counter()
    exact.upsert(ids, data)
    build_exact = time.perf_counter() - t0
    approx = Gallery(dim, approximate_above=0, nprobe=nprobe)
    approx._index = exact._index  # same vectors, then trained into an IVF
    t0 = time.perf_counter()
    approx.rebuild(approximate=True)
    build_ivf = time.perf_counter() - t0
    exact = Gallery(dim, approximate_above=10**12)
    exact.upsert(ids, data)
    out = {
        "identities": n,
        "dim": dim,
        "queries": queries,
        "build_s": {"exact": round(build_exact, 2), "ivf": round(build_ivf, 2)},
    }
    res = {}
    for name, g in (("exact", exact), ("ivf", approx)):
        lat, found = [], []
        for row in q:
            t0 = time.perf_counter()
            _, got = g.search(row[None], 10)
            lat.append((time.perf_counter() - t0) * 1000)
            found.append(got[0])
        res[name] = np.array(found)
        out[f"{name}_ms"] = percentiles(lat)
    out["recall@1"] = round(float((res["ivf"][:, 0] == res["exact"][:, 0]).mean()), 4)
    out["recall@10"] = round(float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(res["ivf"], res["exact"])])), 4)
    out["nlist"] = int(approx._index.nlist)
    out["nprobe"] = int(approx._index.nprobe)
    return out


def past_identities(n_past: int, dim: int, rng: np.random.Generator) -> tuple[list[Identity], np.ndarray]:
    """``n_past`` identities, each last seen within the time to live of the first step (1000 s):
    alive, as a busy site's past identities are (until 2026-12-02 they were last seen at 0 s and
    all expired at the first step, so the hub's cost with them was mostly that expiry)."""
    past = clustered(n_past, dim, rng)
    idents = []
    for g in range(n_past):
        seen = 1000.0 - 250.0 * (g + 1) / n_past
        ident = Identity(g + 1, seen - 5.0, seen, "cam1", {"cam1"})
        ident.past, ident.past_weight, ident.embedding = Embeddings(past[g][None]), 3.0, past[g]
        idents.append(ident)
    return idents, past


CAMS = ["cam1", "cam2", "cam3", "cam4"]
KEEP_ABOVE = 10_000  # room above the past identities for the ones the run founds


def workload(past: np.ndarray, steps: int, rng: np.random.Generator):
    """Per step ``(now, items)``: 4 cameras, 24 live tracklets at a time, each ~3 s, half of them
    a past identity seen again (``items``: the site protocol's ``WireTracklet``)."""
    from edge.wire.site_protocol import WireTracklet

    live = {}  # (camera, local id) -> (vector, first_seen, last step)
    next_lid = {c: 1 for c in CAMS}
    box = np.array([10.0, 10.0, 50.0, 120.0])
    for k in range(steps):
        now = 1000.0 + 0.1 * k
        while len(live) < 24:  # people come and go: each tracklet lives ~3 s
            c = CAMS[rng.integers(0, 4)]
            v = past[rng.integers(0, len(past))] if rng.random() < 0.5 else clustered(1, past.shape[1], rng)[0]
            live[(c, next_lid[c])] = (v, now, k + int(rng.integers(20, 40)))
            next_lid[c] += 1
        items = []
        for (c, lid), (v, first, end) in list(live.items()):
            ended = k >= end
            items.append(WireTracklet(c, lid, first, now, k, float(k), box, box, ended, 0.9, k, Embeddings(v[None])))
            if ended:
                del live[(c, lid)]
        yield now, items


def bench_hub(n_past: int, steps: int, rng: np.random.Generator) -> dict:
    """Summaries per second through Hub._update (engine, candidates, SQLite, gallery)."""
    from edge.site.hub_config import HubConfig
    from edge.site.hub_service import Hub
    from edge.site.sessions import NodeState

    tmp = tempfile.mkdtemp()
    cfg = HubConfig(
        bind="tcp://127.0.0.1:0",
        reid_model=str(MODEL),
        store=f"{tmp}/hub.sqlite",
        publisher={"enabled": False},
        matching={"max_identities": n_past + KEEP_ABOVE},  # the default bound (10 000) would drop the rest
    )
    hub = Hub(cfg)
    idents, past = past_identities(n_past, hub.dim, rng)
    hub.engine.restore(idents, n_past + 1)
    hub.gallery.upsert(range(1, n_past + 1), past)
    nodes = {c: NodeState(f"n{c}", "s", b"x", cameras=[c]) for c in CAMS}
    sent, t_total = 0, 0.0
    for now, items in workload(past, steps, rng):
        batch = [(nodes[w.camera], w, False) for w in items]
        t0 = time.perf_counter()
        hub._update(now, batch)
        t_total += time.perf_counter() - t0
        sent += len(items)
    hub.close()
    return {
        "past_identities": n_past,
        "steps": steps,
        "summaries": sent,
        "summaries_per_s": round(sent / t_total, 1),
        "ms_per_step": round(1000 * t_total / steps, 2),
        "gallery_after": len(hub.engine),
    }


def bench_region_hub(n_past: int, steps: int, rng: np.random.Generator, search: bool = True) -> dict:
    """The same through a stream region hub's step (decode, engine, FAISS candidates when
    ``search``, gallery; no network: what one message costs the hub)."""
    from core.model_card import read_onnx_metadata
    from edge.identity.config import MatchingConfig
    from edge.identity.settings import settings_from_config
    from edge.stream.names import Region
    from edge.stream.region_steps import GallerySettings, RegionSteps
    from edge.wire.site_protocol import encode, encode_tracklets

    meta = read_onnx_metadata(MODEL)
    assert meta is not None and meta.embedding_dim
    dim = int(meta.embedding_dim)
    settings = settings_from_config(
        MatchingConfig(max_identities=n_past + KEEP_ABOVE), meta.similarity, str(MODEL), dim
    )
    gallery = GallerySettings() if search else None
    hub = RegionSteps(Region("bench"), settings, embedding_dim=dim, gallery=gallery)
    idents, past = past_identities(n_past, dim, rng)
    hub.engine.restore(idents, n_past + 1)
    if hub.gallery is not None:
        hub.gallery.upsert(range(1, n_past + 1), past)
    hub.decide(1, encode("hello", {"node": "n", "session": "s", "cameras": CAMS, "embedding_dim": dim}), "n", "s")
    sent, t_total = 0, 0.0
    for k, (now, items) in enumerate(workload(past, steps, rng), start=1):
        parts = encode_tracklets(k, now, items)
        t0 = time.perf_counter()
        hub.decide(k + 1, parts, "n", "s")
        t_total += time.perf_counter() - t0
        sent += len(items)
    return {
        "past_identities": n_past,
        "search": search,
        "gallery_after": len(hub.engine),
        "steps": steps,
        "summaries_per_s": round(sent / t_total, 1),
        "ms_per_step": round(1000 * t_total / steps, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000, 1000000])
    ap.add_argument("--dim", type=int, default=320, help="the demo model's embedding size")
    ap.add_argument(
        "--dim-1m", type=int, default=128, help="embedding size at 1M identities (memory and time on a small box)"
    )
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--nprobe", type=int, default=16)
    ap.add_argument("--hub-past", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--hub-steps", type=int, default=300)
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench" / "hub.json"))
    ap.add_argument("--hub-only", action="store_true", help="only the hub's throughput (no gallery search sizes)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    search = []
    print(
        f"{'identities':>10} {'dim':>4} {'exact p50/p99 ms':>18} {'ivf p50/p99 ms':>16} "
        f"{'recall@1':>8} {'recall@10':>9}  build s (exact/ivf)"
    )
    for n in [] if args.hub_only else args.sizes:
        dim = args.dim_1m if n >= 1_000_000 else args.dim
        r = bench_search(n, dim, args.queries if n < 1_000_000 else args.queries // 3, args.nprobe, rng)
        search.append(r)
        print(
            f"{n:>10} {dim:>4} {r['exact_ms']['p50']:>8.3f} / {r['exact_ms']['p99']:<7.3f} "
            f"{r['ivf_ms']['p50']:>7.3f} / {r['ivf_ms']['p99']:<6.3f} "
            f"{r['recall@1']:>8.3f} {r['recall@10']:>9.3f}  {r['build_s']['exact']}/{r['build_s']['ivf']}",
            flush=True,
        )
    hub, region = [], []
    print(f"\n{'hub':>22} {'past identities':>15} {'summaries/s':>12} {'ms/step':>8}")
    for n in args.hub_past:  # each column on the same data: the generator seeded per size
        r = bench_hub(n, args.hub_steps, np.random.default_rng(n))
        hub.append(r)
        print(f"{'edge.hub':>22} {n:>15} {r['summaries_per_s']:>12} {r['ms_per_step']:>8}", flush=True)
        for with_gallery in (False, True):
            r = bench_region_hub(n, args.hub_steps, np.random.default_rng(n), with_gallery)
            region.append(r)
            name = "stream, FAISS" if with_gallery else "stream, score all"
            print(f"{name:>22} {n:>15} {r['summaries_per_s']:>12} {r['ms_per_step']:>8}", flush=True)
    out = {
        "search": search,
        "hub": hub,
        "region_hub": region,
        "machine": {
            "cpus": __import__("os").cpu_count(),
            "python": platform.python_version(),
            "faiss": __import__("faiss").__version__,
        },
        "command": "python " + " ".join(sys.argv),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

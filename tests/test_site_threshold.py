"""The threshold from the site's own footage: a known answer from known same/different
distributions, the service that waits for it and then decides as an engine with that threshold
would have from the start, and a demo run that learns it, stores it and reads it back."""

import json
import logging

import numpy as np
import pytest
import yaml
from test_edge_run import cams_yaml

from core.embeddings import Embeddings, similarity, weighted_mean
from edge.identity import EngineSettings, IdentityEngine, TrackletSummary
from edge.identity.site_similarity import SiteSimilarity
from edge.identity.threshold_learning import ThresholdLearning
from edge.runtime.capture_loop import run_pipeline
from edge.runtime.config import load_edge_config

DIM = 128


def crop(look, rng, noise=0.6):
    return Embeddings.normalized((look + rng.normal(scale=noise / np.sqrt(DIM), size=DIM))[None].astype(np.float32))


def scene(seed=0, people=24, seconds=60):
    """``people`` walk through two cameras, four at a time in each; a crop per person per second.
    Returns the crops in time order as (t, key, camera, person, crop)."""
    rng = np.random.default_rng(seed)
    looks = rng.normal(size=(people, DIM)) / np.sqrt(DIM)
    out = []
    for p in range(people):
        cam = f"cam{p % 2}"
        start = (p // 2) % 6 * 10.0
        for k in range(12):
            out.append((start + k, (cam, p), cam, p, crop(looks[p], rng)))
    return sorted(out, key=lambda r: (r[0], r[1])), looks


def beside(crops, t, key, cam):
    """The other tracklets of ``cam`` with a crop (a box) at time ``t``."""
    return [k for s, k, c, _, _ in crops if s == t and c == cam and k != key]


def test_the_threshold_is_the_different_person_quantile_of_pseudo_tracklets():
    crops, _ = scene()
    site = SiteSimilarity(false_match_rate=0.05, min_pairs=50)
    for t, key, cam, _, c in crops:
        site.add_crop(key, cam, c, beside(crops, t, key, cam))
    assert site.ready, site.progress()
    stats = site.statistics()
    # the same pseudo-tracklets built with the labels: every pair of people of one camera at once
    pseudo = {}
    for _, _, _, p, c in crops:
        pseudo.setdefault(p, []).append(c)
    means = {
        p: [weighted_mean(Embeddings.concat(cs[i : i + 4]), np.ones(4)) for i in range(0, 12, 4)]
        for p, cs in pseudo.items()
    }
    diff = [float(similarity(a, b)[0, 0]) for p in means for q in means if p < q for a in means[p] for b in means[q]]
    same = [float(similarity(m[i], m[i + 1])[0, 0]) for m in means.values() for i in range(2)]
    assert stats["threshold"] == pytest.approx(np.quantile(diff, 0.95), abs=0.05)
    assert stats["diff_mean"] == pytest.approx(np.mean(diff), abs=0.05)
    assert stats["same_mean"] == pytest.approx(np.mean(same), abs=0.02) and stats["pairs_same"] == len(same)
    assert stats["true_match_rate"] > 0.95


def test_a_lost_track_and_the_new_track_on_its_person_are_no_different_person_pair():
    """The tracker keeps a lost track live a few seconds; the new track that picks its person up
    is seen with it, but not in one frame: no pair (it would be a same-person one among the
    different-person cosines, at the top of them)."""
    rng = np.random.default_rng(1)
    look, other = rng.normal(size=(2, DIM)) / np.sqrt(DIM)
    site = SiteSimilarity(min_pairs=1)
    for _ in range(8):  # track 1 on the person, track 2 on someone else, in the same frames
        site.add_crop(("cam", 1), "cam", crop(look, rng), [("cam", 2)])
        site.add_crop(("cam", 2), "cam", crop(other, rng), [("cam", 1)])
    pairs = len(site.diff)
    assert pairs > 0
    for _ in range(8):  # track 1 lost (not ended: no end()), track 3 picks its person up beside track 2
        site.add_crop(("cam", 3), "cam", crop(look, rng), [("cam", 2)])
        site.add_crop(("cam", 2), "cam", crop(other, rng), [("cam", 3)])
    keys = {i: k for k, tr in site.tracks.items() for i in [tr.last]}
    assert all(keys.get(a) != ("cam", 1) and keys.get(b) != ("cam", 1) for a, b in site.diff[pairs:])
    assert len(site.diff) > pairs  # track 3 and track 2 do pair


def summary(key, look, first, last, ended=False, n=3):
    return TrackletSummary(
        key[0], key[1], first, last, look, n, float(n),
        np.array([100, 100, 140, 200.0]), np.array([100, 100, 140, 200.0]), None, ended,
    )  # fmt: skip


def test_nothing_is_decided_until_the_threshold_is_learned_then_what_an_engine_with_it_decides(caplog):
    crops, looks = scene()
    settings = EngineSettings(threshold=1.0, min_embeddings=2)
    raw = lambda stats: EngineSettings(threshold=stats["threshold"], scale=stats["diff_std"], min_embeddings=2)  # noqa: E731
    service = ThresholdLearning(settings, SiteSimilarity(min_pairs=60), raw, learned=(told := []).append)
    steps, out, first_decision = [], [], None
    caplog.set_level(logging.INFO, logger="edge.identity.site_similarity")
    for i, (t, key, cam, p, c) in enumerate(crops):
        service.similarity.add_crop(key, cam, c, beside(crops, t, key, cam))
        step = [summary((f"cam{2 + p % 2}", p), c, t - 1, t)]  # each person later seen elsewhere too
        steps.append((t, step))
        decided = service.update(step, t)
        out += decided
        if decided and first_decision is None:
            first_decision = i
    assert first_decision is not None and first_decision > 0 and len(told) == 1
    assert "learned from this site's footage" in caplog.text
    reference = IdentityEngine(
        EngineSettings(threshold=told[0]["threshold"], scale=told[0]["diff_std"], min_embeddings=2)
    )
    expected = [d for t, step in steps for d in reference.update(step, t)]
    assert [(d.kind, d.key, d.global_id) for d in out] == [(d.kind, d.key, d.global_id) for d in expected]


def test_a_run_that_ends_before_any_pair_keeps_every_tracklet_apart(caplog):
    settings = EngineSettings(threshold=1.0, min_embeddings=1)
    service = ThresholdLearning(settings, SiteSimilarity(), lambda stats: settings)
    look = Embeddings.normalized(np.ones((1, DIM), np.float32))
    assert (
        service.update([summary(("a", 1), look, 0, 1, ended=True), summary(("b", 1), look, 2, 3, ended=True)], 3) == []
    )
    decided = service.flush(3.0)
    assert sorted(d.kind for d in decided) == ["new", "new"] and "every tracklet keeps an identity" in caplog.text


def test_a_demo_run_learns_the_threshold_stores_it_and_the_next_start_reads_it(tmp_path, caplog):
    cams = [{"id": f"cam{i}", "source": f"synthetic://demo?camera=cam{i}", "realtime": False} for i in (1, 2, 3)]
    store = tmp_path / "site_similarity.json"
    path = cams_yaml(
        tmp_path, cams, 56802, publisher={"enabled": False}, run={"max_frames": 150}, reid={"embed_every": 1},
        matching={"threshold": "site", "site_threshold": {"store": str(store), "min_pairs": 30}},
    )  # fmt: skip
    caplog.set_level(logging.INFO)
    report = run_pipeline(load_edge_config(path))
    kept = json.loads(store.read_text())
    assert kept["model_id"].startswith("reid.onnx:") and kept["statistics"]["pairs_diff"] >= 30
    assert "camera-centered threshold" in caplog.text and "learned from this site's footage" in caplog.text
    assert set(kept["statistics"]["centered"]) >= {"threshold", "diff_std"} and len(kept["statistics"]["mean"]) > 0
    rows = [
        r.split(",")
        for cam in ("cam1", "cam2", "cam3")
        for r in (tmp_path / "mot" / f"{cam}.txt").read_text().splitlines()
    ]
    glob = [
        r.split(",")
        for cam in ("cam1", "cam2", "cam3")
        for r in (tmp_path / "mot" / f"{cam}.global.txt").read_text().splitlines()
    ]
    assert len(glob) >= 0.9 * len(rows) > 0  # every tracklet got its identity, after the learning too
    assert report["threshold"]["pairs_diff"] >= 30
    caplog.clear()
    cfg = yaml.safe_load(path.read_text())
    cfg["run"]["max_frames"] = 5
    path.write_text(yaml.safe_dump(cfg))
    run_pipeline(load_edge_config(path))
    assert f"this site ({store}" in caplog.text and "learning it" not in caplog.text

"""Camera centering (edge/identity/centering.py): each camera's mean look is taken out before
appearances are compared. Known answers for the running mean with its prior, the direction it must
move decisions in (two cameras with strong colour casts: raw cosines split one person, centered
ones join them), the statistics training stores for it and how the engine picks its threshold."""

import numpy as np
import pytest

from core.embeddings import Embeddings
from edge.identity import EngineSettings, IdentityEngine, TrackletSummary, settings_from_config
from edge.identity.centering import CameraCentering
from edge.identity.config import MatchingConfig


def n(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


E = np.eye(6, dtype=np.float32)
# two people (axes 0, 1) seen by two cameras that each add a strong cast of their own (axes 2, 3)
A1, B1 = n(E[0] + 2 * E[2]), n(E[1] + 2 * E[2])
A2, B2 = n(E[0] + 2 * E[3]), n(E[1] + 2 * E[3])


def summary(cam, local, vec, first, last, box=(100, 100, 140, 200)):
    return TrackletSummary(
        cam,
        local,
        first,
        last,
        Embeddings(np.asarray(vec, np.float32)[None]),
        5,
        5.0,
        np.array(box, float),
        np.array(box, float),
        None,
        True,
    )


def test_camera_mean_starts_at_the_prior_and_moves_to_the_cameras_own_look():
    prior = n(E[4])
    c = CameraCentering(prior, prior_weight=2.0)
    c.refresh([])
    assert np.allclose(c.mean("cam1"), prior)  # nothing seen yet: the model's mean look
    c.refresh([summary("cam1", 1, A1, 0, 1), summary("cam1", 2, B1, 0, 1), summary("cam2", 1, A2, 0, 1)])
    assert np.allclose(c.mean("cam1"), (A1 + B1 + 2 * prior) / 4)
    assert np.allclose(c.mean("cam2"), (A2 + 2 * prior) / 3)
    c.add_final("cam1", Embeddings(A1[None]))  # a final tracklet stays in the mean after it left the live set
    c.refresh([summary("cam1", 2, B1, 0, 1)])
    assert np.allclose(c.mean("cam1"), (A1 + B1 + 2 * prior) / 4)
    centered = c.center(Embeddings(A1[None]), "cam1").global_[0]
    assert np.allclose(centered, n(A1 - (A1 + B1 + 2 * prior) / 4), atol=1e-6)


def test_centering_removes_a_camera_cast_that_raw_cosines_cannot_see_past():
    """Raw: A in cam1 vs A in cam2 is 0.2 (the casts dominate), below the 0.5 threshold, and A vs B
    in one camera is 0.8: raw matching gives A's cam2 tracklet a new identity. Centered (each
    camera's mean is A+B's middle), A and A are 1 and A and B are -1: two people, one id each."""
    assert float(A1 @ A2) == pytest.approx(0.2) and float(A1 @ B1) == pytest.approx(0.8)
    tracklets = [
        summary("cam1", 1, A1, 0, 2),
        summary("cam1", 2, B1, 0, 2, box=(300, 100, 340, 200)),
        summary("cam2", 1, A2, 10, 12),
        summary("cam2", 2, B2, 10, 12, box=(300, 100, 340, 200)),
    ]
    results = {}
    for centering in (False, True):
        e = IdentityEngine(
            EngineSettings(
                threshold=0.5,
                scale=0.1,
                centering=centering,
                center_prior_weight=0.5,
                center_prior=np.zeros(6, np.float32),
            )
        )
        e.update(tracklets, 12.0)
        results[centering] = {k: e.global_id(k) for k in [t.key for t in tracklets]}
    raw, centered = results[False], results[True]
    assert raw[("cam2", 1)] != raw[("cam1", 1)] and len(set(raw.values())) >= 3
    assert centered[("cam2", 1)] == centered[("cam1", 1)] and centered[("cam2", 2)] == centered[("cam1", 2)]
    assert centered[("cam1", 1)] != centered[("cam1", 2)]


def test_similarity_stats_store_centered_statistics_and_the_mean_look():
    """The same two people and casts, 4 identical crops per person and camera: centered, the same
    person is 1 and different people are -1 across cameras; the mean is that of the 4 tracklets."""
    from trainer.eval.similarity_stats import similarity_stats

    emb = Embeddings(np.stack([A1] * 4 + [B1] * 4 + [A2] * 4 + [B2] * 4))
    pids = np.array([0] * 4 + [1] * 4 + [0] * 4 + [1] * 4)
    cams = np.array([0] * 8 + [1] * 8)
    s = similarity_stats(emb, pids, cams, false_match_rate=0.5)
    assert s["same_mean"] == pytest.approx(0.2) and s["diff_mean"] == pytest.approx(0.0, abs=1e-6)
    assert s["centered"]["same_mean"] == pytest.approx(1.0) and s["centered"]["diff_mean"] == pytest.approx(-1.0)
    assert np.allclose(s["mean"], (A1 + B1 + A2 + B2) / 4, atol=1e-5)


STATS = {"threshold": 0.93, "diff_std": 0.05, "mean": [0.0] * 6, "centered": {"threshold": 0.52, "diff_std": 0.22}}


def test_engine_takes_the_centered_threshold_when_the_model_has_one():
    s = settings_from_config(MatchingConfig(), STATS)
    assert s.centering and s.threshold == 0.52 and s.scale == 0.22 and s.center_prior.shape == (6,)
    raw = settings_from_config(MatchingConfig(centering=False), STATS)
    assert not raw.centering and raw.threshold == 0.93 and raw.scale == 0.05
    configured = settings_from_config(MatchingConfig(threshold=0.6), STATS)  # a configured threshold is a raw one
    assert not configured.centering and configured.threshold == 0.6
    old = settings_from_config(MatchingConfig(), {"threshold": 0.93, "diff_std": 0.05})  # older export: raw
    assert not old.centering and old.threshold == 0.93


def test_centering_asked_for_without_centered_statistics_is_a_clear_error():
    with pytest.raises(ValueError, match="no centered similarity statistics.*matching.centering: false"):
        settings_from_config(MatchingConfig(centering=True), {"threshold": 0.93}, "osnet.onnx")
    s = settings_from_config(
        MatchingConfig(centering=True, threshold=0.4), None
    )  # third-party model, centered threshold
    assert s.centering and s.threshold == 0.4 and s.center_prior is None


def test_a_restored_engine_keeps_each_cameras_look():
    """What a site hub persists (JSON) brings a restarted engine back to the same camera means."""
    import json

    settings = EngineSettings(threshold=0.5, scale=0.1, centering=True, center_prior=np.zeros(6, np.float32))
    a = IdentityEngine(settings)
    a.update(
        [
            summary("cam1", 1, A1, 0, 2),
            summary("cam1", 2, B1, 0, 2, box=(300, 100, 340, 200)),
            summary("cam2", 1, A2, 10, 12),
        ],
        12.0,
    )
    a.flush(12.0)
    state = json.loads(json.dumps(a.centering_state()))
    assert state["cam1"]["n"] == 2 and state["cam2"]["n"] == 1
    b = IdentityEngine(settings)
    b.restore(list(a.identities.values()), 10, state)
    b.update([summary("cam2", 2, B2, 20, 22)], 22.0)
    assert np.allclose(b.centering.mean("cam1"), a.centering.mean("cam1"), atol=1e-6)
    assert np.allclose(b.centering.mean("cam1"), (A1 + B1) / 5, atol=1e-6)  # prior weight 3, zero prior
    with pytest.raises(ValueError, match="centering state for cam1: 4 values"):
        c = IdentityEngine(settings)
        c.restore([], 1, {"cam1": {"sum": [0.0] * 4, "parts": None, "n": 1}})
        c.update([summary("cam1", 1, A1, 0, 2)], 2.0)


def test_a_prior_of_the_wrong_size_is_a_clear_error_at_start():
    with pytest.raises(ValueError, match="reid.onnx: similarity.mean has 6 values, its embeddings 320"):
        settings_from_config(MatchingConfig(), STATS, "reid.onnx", embedding_dim=320)
    c = CameraCentering(np.zeros(4, np.float32), prior_parts=np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"centering state for cam1: parts \(3, 5\), the model's \(3, 4\)"):
        c.load({"cam1": {"sum": [0.0] * 4, "parts": np.zeros((3, 5)).tolist(), "n": 2}})


def test_flickers_do_not_move_a_cameras_mean():
    """Tracklets with fewer crops than min_embeddings count neither live nor final."""
    e = IdentityEngine(
        EngineSettings(threshold=0.5, scale=0.1, centering=True, min_embeddings=2, center_prior=np.zeros(6, np.float32))
    )
    flicker = TrackletSummary("cam1", 9, 0, 0.1, Embeddings(B1[None]), 1, 1.0, np.zeros(4), np.zeros(4), None, True)
    e.update([summary("cam1", 1, A1, 0, 2), flicker], 2.0)
    assert np.allclose(e.centering.mean("cam1"), A1 / 4)  # A1 with the zero prior at weight 3
    e.flush(2.0)
    assert e.centering_state()["cam1"]["n"] == 1


def test_a_sealed_identity_says_so_in_its_new_event():
    from edge.wire.publisher import decision_event

    e = IdentityEngine(EngineSettings(threshold=0.5, scale=0.1, min_embeddings=2))
    flicker = TrackletSummary("cam1", 9, 0, 0.1, Embeddings(B1[None]), 1, 1.0, np.zeros(4), np.zeros(4), None, True)
    (short,) = e.update([flicker], 0.1)
    (full,) = e.update([summary("cam2", 1, A2, 1, 3)], 3.0)
    assert decision_event(short, e.identities[short.global_id])["sealed"] is True
    assert "sealed" not in decision_event(full, e.identities[full.global_id])

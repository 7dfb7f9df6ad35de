import json

import numpy as np
import pytest

from core.embeddings import Embeddings, similarity
from trainer.eval.evaluate import write_report
from trainer.eval.metrics import evaluate_rank
from trainer.eval.rerank import re_ranking


def reference_metrics(dist, qp, gp, qc, gc, max_rank):
    """Independent, loop-by-loop version of the protocol (Python's sort is stable too)."""
    cmc_total, aps, inps = [0.0] * max_rank, [], []
    for i in range(len(qp)):
        ranked = sorted(range(len(gp)), key=lambda j: dist[i][j])
        kept = [j for j in ranked if not (gp[j] == qp[i] and gc[j] == qc[i])]
        good = [r for r, j in enumerate(kept) if gp[j] == qp[i]]
        if not good:
            continue
        for r in range(max_rank):
            cmc_total[r] += 1.0 if good[0] <= r else 0.0
        aps.append(sum((n + 1) / (r + 1) for n, r in enumerate(good)) / len(good))
        inps.append(len(good) / (good[-1] + 1))
    n = len(aps)
    return [c / n for c in cmc_total], sum(aps) / n, sum(inps) / n, n


def test_known_answer():
    # gallery order after sorting: g0 (wrong), g1 (right), g2 (same cam, removed), g3 (right)
    dist = np.array([[0.1, 0.2, 0.3, 0.4]])
    r = evaluate_rank(dist, np.array([1]), np.array([2, 1, 1, 1]), np.array([0]), np.array([1, 1, 0, 2]), max_rank=3)
    assert r.cmc.tolist() == [0.0, 1.0, 1.0]
    assert r.mAP == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert r.mINP == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed", range(5))
def test_matches_reference_with_ties_junk_and_unmatched(seed):
    rng = np.random.default_rng(seed)
    q, g = 15, 40
    dist = rng.integers(0, 6, size=(q, g)).astype(float)  # many ties
    qp = rng.integers(0, 8, q)
    qp[0] = 99  # a query with no match anywhere
    gp = rng.integers(-1, 8, g)  # includes distractors (-1 / 0)
    qc, gc = rng.integers(0, 3, q), rng.integers(0, 3, g)
    r = evaluate_rank(dist, qp, gp, qc, gc, max_rank=10)
    cmc, mAP, mINP, n = reference_metrics(dist.tolist(), qp.tolist(), gp.tolist(), qc.tolist(), gc.tolist(), 10)
    np.testing.assert_allclose(r.cmc, cmc)
    assert r.mAP == pytest.approx(mAP) and r.mINP == pytest.approx(mINP)
    assert r.num_valid == n and r.num_skipped == q - n >= 1


def test_no_valid_query_is_an_error():
    with pytest.raises(ValueError, match="no query has a true match"):
        evaluate_rank(np.zeros((1, 2)), np.array([1]), np.array([1, 2]), np.array([0]), np.array([0, 1]))


def two_clusters():
    # points on a line: query a=0; gallery b=0.1, c=10, d=10.1  (absolute distances)
    pts = np.array([0.0, 0.1, 10.0, 10.1])
    d = np.abs(pts[:, None] - pts[None, :])
    return d[:1, 1:], d[:1, :1], d[1:, 1:]


def test_rerank_lambda_one_is_row_normalised_original():
    qg, qq, gg = two_clusters()
    out = re_ranking(qg, qq, gg, k1=1, k2=1, lambda_value=1.0)
    np.testing.assert_allclose(out, [[0.1 / 10.1, 10 / 10.1, 1.0]], rtol=1e-6)


def test_rerank_jaccard_by_hand():
    """k1=1, k2=1: R(a) = {a, b} and R(b) = {b, a}; c and d share no neighbour with a.

    V[a] = softmax-like weights exp(-d) / sum over {a, b} with rows normalised by their max:
    row a: d(a,a)=0, d(a,b)=0.1/10.1 ; row b: d(b,b)=0, d(b,a)=0.1/10.0.
    Jaccard(a, b) = 1 - s / (2 - s), s = min(V[a,a], V[b,a]) + min(V[a,b], V[b,b]).
    """
    qg, qq, gg = two_clusters()
    va = np.exp(-np.array([0.0, 0.1 / 10.1]))
    va /= va.sum()
    vb = np.exp(-np.array([0.1 / 10.0, 0.0]))  # (b->a, b->b)
    vb /= vb.sum()
    s = min(va[0], vb[0]) + min(va[1], vb[1])
    expected_ab = 1 - s / (2 - s)
    out = re_ranking(qg, qq, gg, k1=1, k2=1, lambda_value=0.0)
    np.testing.assert_allclose(out, [[expected_ab, 1.0, 1.0]], atol=1e-6)
    mixed = re_ranking(qg, qq, gg, k1=1, k2=1, lambda_value=0.3)
    np.testing.assert_allclose(mixed, 0.7 * out + 0.3 * np.array([[0.1 / 10.1, 10 / 10.1, 1.0]]), atol=1e-6)


def test_rerank_fixes_a_non_reciprocal_nearest_neighbour():
    """The query's nearest gallery image f is a false match whose own neighbours are elsewhere.

    q=(0,0); true matches b1=(0.7,0), b2=(0.75,0.05); false f=(0,-0.5) has three closer
    neighbours of its own around (0,-0.8). q is among b1's and b2's 3 nearest, not among f's:
    R(q) = {q, b1, b2}, Jaccard(q, f) = 1, and re-ranking puts b1 first.
    """
    g = np.array([[0.0, -0.5], [0.7, 0.0], [0.75, 0.05], [0.0, -0.85], [0.15, -0.8], [-0.15, -0.8]])
    q = np.array([[0.0, 0.0]])
    d = lambda a, b: np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))  # noqa: E731
    qg = d(q, g)
    assert qg.argmin() == 0  # plain ranking: the false match first
    jaccard = re_ranking(qg, d(q, q), d(g, g), k1=3, k2=1, lambda_value=0.0)
    assert jaccard[0, 0] == 1.0 and jaccard[0, 3:].tolist() == [1.0, 1.0, 1.0] and jaccard[0, 1] < 0.6
    out = re_ranking(qg, d(q, q), d(g, g), k1=3, k2=1, lambda_value=0.3)
    assert out[0].argmin() == 1
    gp, qp = np.array([0, 1, 1, 0, 0, 0]), np.array([1])
    cams = (np.array([0]), np.ones(6, int))
    assert evaluate_rank(out, qp, gp, *cams, max_rank=6).rank(1) == 1.0
    assert evaluate_rank(qg, qp, gp, *cams, max_rank=6).rank(1) == 0.0


def test_similarity_weights_parts_by_shared_visibility():
    g = np.array([[1.0, 0.0]])
    a = Embeddings(g, parts=np.array([[[1.0, 0.0], [0.0, 1.0]]]), part_conf=np.array([[1.0, 0.0]]))
    b = Embeddings(g, parts=np.array([[[1.0, 0.0], [1.0, 0.0]]]), part_conf=np.array([[1.0, 1.0]]))
    # global cos 1, part0 cos 1 (weight 1), part1 cos 0 but weight 0 (hidden in a)
    assert similarity(a, b)[0, 0] == pytest.approx(1.0)
    c = Embeddings(g, parts=np.array([[[1.0, 0.0], [0.0, 1.0]]]), part_conf=np.array([[1.0, 1.0]]))
    assert similarity(c, b)[0, 0] == pytest.approx((1 + 1 + 0) / 3)


def test_report_writes_json_and_png(tmp_path):
    r = evaluate_rank(
        np.array([[0.1, 0.2]]), np.array([1]), np.array([1, 2]), np.array([0]), np.array([1, 1]), max_rank=2
    )
    paths = write_report(r, tmp_path, "eval", {"dataset": "toy"})
    data = json.loads(paths["json"].read_text())
    assert data["R1"] == 1.0 and data["dataset"] == "toy" and len(data["cmc"]) == 2
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_distance_matrices_rerank_on_duplicate_features(metric):
    """Identical query/gallery vectors make 1 - cos round below zero; re-ranking must still run."""
    from trainer.config import EvalConfig
    from trainer.eval.evaluate import distance_matrices

    rng = np.random.default_rng(0)
    g = rng.standard_normal((10, 16)).astype(np.float32)
    q = g[:3].copy()
    cfg = EvalConfig(distance=metric, rerank=True, k1=3, k2=2)
    d = distance_matrices(q, g, cfg)
    assert d.shape == (3, 10) and (d >= 0).all()
    assert (d.argmin(axis=1) == np.arange(3)).all()


def test_part_similarity_can_be_switched_off():
    from core.embeddings import Embeddings
    from trainer.config import EvalConfig
    from trainer.eval.evaluate import distance_matrices

    g = np.array([[1.0, 0.0], [0.8, 0.6]])
    parts = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    a = Embeddings(g[:1], parts[:1], np.ones((1, 1)))
    b = Embeddings(g, parts, np.ones((2, 1)))
    with_parts = distance_matrices(a, b, EvalConfig())
    assert with_parts[0].tolist() == pytest.approx([0.0, 1 - (0.8 + 0.0) / 2])
    assert distance_matrices(a, b, EvalConfig(use_parts=False))[0].tolist() == pytest.approx([0.0, 0.2])


def test_embeddings_are_normalised_once_by_their_maker():
    """The contract type does not renormalise what a model returns (the model owns that, see
    ``Inference.normalized``); vectors that are not unit length yet go through ``normalized``."""
    raw = np.array([[3.0, 4.0]])
    assert np.allclose(Embeddings(raw).global_, raw)
    assert np.allclose(Embeddings.normalized(raw).global_, [[0.6, 0.8]])
    made = Embeddings.normalized(raw, parts=np.array([[[0.0, 2.0]]]), part_conf=np.array([[1.5]]))
    assert np.allclose(made.parts, [[[0.0, 1.0]]]) and made.part_conf[0, 0] == 1.0


def test_a_models_inference_is_normalised_in_one_place():
    """``Inference.normalized`` gives unit embeddings and parts and leaves the confidences alone;
    the torch path returns exactly those vectors."""
    import torch

    from trainer.methods.base import Inference
    from trainer.models.reid import to_embeddings

    out = Inference(torch.tensor([[3.0, 4.0]]), torch.tensor([[[0.0, 5.0], [2.0, 0.0]]]), torch.tensor([[0.5, 0.25]]))
    unit = out.normalized()
    assert torch.allclose(unit.embedding, torch.tensor([[0.6, 0.8]]))
    assert torch.allclose(unit.parts, torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]))
    assert torch.equal(unit.part_conf, out.part_conf)
    emb = to_embeddings(out)
    assert np.allclose(emb.global_, [[0.6, 0.8]]) and np.allclose(emb.parts, unit.parts.numpy())

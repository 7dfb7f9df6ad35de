"""Mechanisms observed on trained tiny models, each as a statistic with a known direction."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_recipe
from trainer.config import TrainConfig
from trainer.engine.trainer import Trainer
from trainer.eval.evaluate import distance_matrices, extract_features
from trainer.data.loader import eval_loader

pytestmark = pytest.mark.slow


def fit(tmp_path, model: dict, **sections) -> Trainer:
    trainer = Trainer(TrainConfig.model_validate(tiny_recipe(tmp_path, model=model, **sections)), progress=False)
    trainer.fit()
    return trainer


def ranking(trainer: Trainer) -> np.ndarray:
    """[Q, G] gallery indices of each query, nearest first."""
    data, cfg = trainer.data, trainer.cfg
    q = extract_features(trainer.model, eval_loader(data.query, cfg), trainer.rt.device, progress=False)
    g = extract_features(trainer.model, eval_loader(data.gallery, cfg), trainer.rt.device, progress=False)
    return np.argsort(distance_matrices(q[0], g[0], cfg.eval), axis=1, kind="stable")


def test_tgi_off_changes_the_ranking(tmp_path, monkeypatch):
    """TGI only shapes stage 2's image-to-text targets, so it can change the ranking only through
    training. Runs from one seed: TGI on, and TGI made a no-op (its output is the plain text
    features, so the i2t logits are exactly TGI off's, with the same parameters and random
    draws), twice. The no-op runs rank identically (training is deterministic, so a difference
    means something); TGI on ranks the gallery differently. A no-op TGI fails the test."""
    from trainer.losses import image_to_text_ce
    from trainer.methods.mscsa_tgi import TextGuidedFusion

    model = {"backbone": {"name": "tiny-rn"}, "image_size": [64, 32],
             "method": {"name": "mscsa_tgi", "mscsa_tgi": {"tgi_width": 32, "tgi_layers": 1, "tgi_scale_init": 0.5}}}
    sections = {"stage1": {"epochs": 1}, "stage2": {"epochs": 3}}
    on_trainer = fit(tmp_path / "on", model, **sections)
    on = ranking(on_trainer)
    with monkeypatch.context() as m:
        m.setattr(TextGuidedFusion, "forward", lambda self, text, visual: text.float()[None].expand(visual.shape[0], -1, -1) + 0 * self.scale)
        noop = [ranking(fit(tmp_path / f"noop{k}", model, **sections)) for k in range(2)]
        # the no-op is TGI off: its i2t loss equals the plain one on a batch
        net, method = on_trainer.model.train(), on_trainer.model.method
        images, pids = torch.randn(4, 3, 64, 32), torch.tensor([0, 1, 2, 3])
        out = net(images, pids=pids)
        scale = net.logit_scale.exp()
        plain = image_to_text_ce(out.proj_feat, method.text_features, pids, scale)
        fused = torch.nn.functional.cross_entropy(out.extras["i2t_logits"], pids, label_smoothing=0.1)
        assert fused.item() == pytest.approx(plain.item(), rel=1e-5)
    assert np.array_equal(noop[0], noop[1]), "training is not deterministic: a ranking difference would mean nothing"
    changed = (on[:, :5] != noop[0][:, :5]).any(axis=1).mean()
    assert changed > 0.2, f"TGI changed the top-5 of only {changed:.0%} of queries"

"""The baseline recipe against the official CLIP-ReID code: schedules, weight decay, erasing,
the three-feature triplet loss and the RN50 recipe."""

from __future__ import annotations

import pytest
import torch
from conftest import REPO

from trainer.clip.image_encoders import ImageFeatures
from trainer.config import Stage1Config, Stage2Config, load_train_config
from trainer.data.transforms import train_transform
from trainer.engine.optim import build_optimizer, lr_factor
from trainer.engine.stages import stage2_triplet
from trainer.losses import batch_hard_triplet


def test_step_schedule_matches_warmup_multistep_stepped_before_each_epoch():
    # official: scheduler.step() at the start of 1-based epoch e -> last_epoch = e
    cfg = Stage2Config(warmup_epochs=10, warmup_factor=0.1, milestones=[30, 50], gamma=0.1, epochs=60)
    official = []
    for e in range(1, 61):
        warm = 0.1 * (1 - e / 10) + e / 10 if e < 10 else 1.0
        official.append(warm * 0.1 ** sum(m <= e for m in (30, 50)))
    ours = [lr_factor(i, cfg) for i in range(60)]
    assert ours == pytest.approx(official)
    assert ours[0] == pytest.approx(0.19)  # not 0.1: the first epoch already runs at t = 1
    assert ours[28] == 1.0 and ours[29] == pytest.approx(0.1)  # 1-based epoch 30 is decayed


def test_cosine_schedule_matches_timm_stepped_with_1_based_epochs():
    cfg = Stage1Config(lr=3.5e-4, warmup_epochs=5, warmup_factor=1e-5 / 3.5e-4, min_lr=1e-6, epochs=120)
    import math

    for i in range(120):
        t = i + 1
        if t < 5:
            lr = 1e-5 + t * (3.5e-4 - 1e-5) / 5
        else:
            lr = 1e-6 + 0.5 * (3.5e-4 - 1e-6) * (1 + math.cos(math.pi * t / 120))
        assert lr_factor(i, cfg) * 3.5e-4 == pytest.approx(lr, rel=1e-9), i
    assert lr_factor(119, cfg) * 3.5e-4 == pytest.approx(1e-6)


def test_every_parameter_decays_biases_with_their_own_rate():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    opt = build_optimizer(
        net.named_parameters(), Stage2Config(weight_decay=5e-4, weight_decay_bias=1e-4, lr=1.0, bias_lr_factor=2.0)
    )
    groups = {n: (g["weight_decay"], g["lr"]) for (n, _), g in zip(net.named_parameters(), opt.param_groups)}
    assert groups["0.weight"] == (5e-4, 1.0)
    assert groups["1.weight"] == (5e-4, 1.0)  # LayerNorm weight: decayed, as the official code
    assert groups["0.bias"] == (1e-4, 2.0) and groups["1.bias"] == (1e-4, 2.0)
    default = build_optimizer(net.named_parameters(), Stage2Config(weight_decay=5e-4))
    assert all(g["weight_decay"] == 5e-4 for g in default.param_groups)  # WEIGHT_DECAY_BIAS = WEIGHT_DECAY


def test_random_erasing_fills_random_pixels_not_the_mean_colour():
    from PIL import Image

    torch.manual_seed(0)
    transform = train_transform((64, 32), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), flip_prob=0, padding=0, erasing_prob=1.0)
    grey = Image.new("RGB", (32, 64), (128, 128, 128))
    x = transform(grey)
    clean = torch.full_like(x, (128 / 255 - 0.5) / 0.5)
    erased = (x - clean).abs() > 1e-4
    assert erased.any()
    values = x[erased]
    assert values.std() > 0.5  # N(0, 1) noise; mean-colour erasing would be a constant 0
    assert not torch.isclose(values, torch.zeros_like(values), atol=1e-3).all()


def test_stage2_triplet_sums_over_penultimate_final_and_projected_features():
    g = torch.Generator().manual_seed(0)
    pids = torch.tensor([0, 0, 1, 1, 2, 2])
    prev, glob, proj = (torch.randn(6, d, generator=g) for d in (8, 8, 5))
    feats = ImageFeatures(global_feat=glob, proj_feat=proj, prev_feat=prev)
    expected = sum(batch_hard_triplet(f, pids, 0.3, centered=True) for f in (prev, glob, proj))
    assert stage2_triplet(feats, pids, 0.3).item() == pytest.approx(expected.item())
    official = sum(batch_hard_triplet(f, pids, 0.3) for f in (prev, glob, proj))  # stage2.triplet_space: raw
    assert stage2_triplet(feats, pids, 0.3, centered=False).item() == pytest.approx(official.item())


@pytest.mark.parametrize("backbone,prev_dim", [("tiny-vit", None), ("tiny-rn", 3)])
def test_encoders_return_the_penultimate_feature(backbone, prev_dim):
    from trainer.config import ModelConfig
    from trainer.models import build_model

    torch.manual_seed(0)
    model = build_model(
        ModelConfig.model_validate({"backbone": {"name": backbone}, "image_size": [64, 32]}),
        num_classes=3,
        num_cameras=2,
    ).eval()
    enc = model.image_encoder
    images = torch.randn(2, 3, 64, 32)
    feats = enc(images)
    if prev_dim is None:  # ViT: [CLS] out of the penultimate block, before ln_post
        blocks = enc(images, return_layers=(enc.num_blocks - 1,)).tokens[enc.num_blocks - 1]
        assert torch.allclose(feats.prev_feat, blocks[:, 0])
    else:  # ResNet: pooled stage 3
        maps = enc(images, return_layers=(3,)).maps[3]
        assert torch.allclose(feats.prev_feat, maps.mean(dim=(2, 3)))
        assert feats.prev_feat.shape[1] == enc.stage_channels()[2]


def test_rn50_recipe_is_the_official_one():
    cfg = load_train_config(REPO / "configs/rn50_market1501.yaml")
    assert cfg.stage1.epochs == 60 and cfg.stage2.id_weight == 1.0 and cfg.stage2.warmup_factor == 0.01
    assert cfg.stage2.weight_decay == 5e-4 and cfg.stage2.bias_weight_decay() == 5e-4
    assert cfg.data.mean == (0.485, 0.456, 0.406) and cfg.data.std == (0.229, 0.224, 0.225)
    assert cfg.stage2.lr == 3.5e-4 and cfg.stage2.milestones == [40, 70] and cfg.stage2.epochs == 120
    vit = load_train_config(REPO / "configs/vit_market1501.yaml")
    assert vit.stage2.id_weight == 0.25 and vit.data.mean[0] == pytest.approx(0.48145466)

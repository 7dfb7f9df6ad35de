"""Loss formulas against values computed by hand (CLIP-ReID stage 1 and 2, AG-ReID Eqs. 8 / 14)."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.losses import batch_hard_triplet, image_to_text_ce, supcon
from trainer.methods.agreid import attribute_alignment
from trainer.models import build_model


def test_supcon_against_hand_computed_value():
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    contrast = torch.tensor([[2.0, 0.0], [0.0, 5.0], [3.0, 0.0]])  # norms do not matter: normalised inside
    # scale 2: logits [2, 0, 2] and [0, 2, 0]; anchor 0 has positives 0 and 2, anchor 1 has positive 1
    row0 = math.log(2 * math.e**2 + 1) - 2
    row1 = math.log(math.e**2 + 2) - 2
    got = supcon(anchors, contrast, torch.tensor([0, 1]), torch.tensor([0, 1, 0]), 2.0)
    assert got.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_supcon_text_to_image_direction_averages_over_all_images_of_the_identity():
    texts = torch.tensor([[1.0, 0.0]])
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # logits (scale 1): [1, 0, 1/sqrt(2)]; the text's positives are images 0 and 2
    lse = math.log(math.e + 1 + math.exp(2**-0.5))
    expected = -((1 - lse) + (2**-0.5 - lse)) / 2
    assert supcon(texts, images, torch.tensor([4]), torch.tensor([4, 7, 4]), 1.0).item() == pytest.approx(
        expected, rel=1e-6
    )


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_image_to_text_ce_against_hand_computed_value(smoothing):
    image = torch.tensor([[2.0, 0.0]])
    texts = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    # logits (scale 3): [3, 0]; log p = [3 - lse, -lse]
    lse = math.log(math.e**3 + 1)
    logp = [3 - lse, -lse]
    expected = -(1 - smoothing) * logp[0] - smoothing * sum(logp) / 2
    assert image_to_text_ce(image, texts, torch.tensor([0]), 3.0, smoothing).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("margin,expected", [(0.3, 0.3 / 4), (1.5, (0.0 + 0.5 + 1.5 + 0.0) / 4)])
def test_batch_hard_triplet_against_hand_computed_value(margin, expected):
    # 1-D points 0, 1 (id 0) and 3, 5 (id 1): hardest positive / negative distances
    # anchor 0: 1 / 3, anchor 1: 1 / 2, anchor 3: 2 / 2, anchor 5: 2 / 4
    x = torch.tensor([[0.0], [1.0], [3.0], [5.0]])
    assert batch_hard_triplet(x, torch.tensor([0, 0, 1, 1]), margin).item() == pytest.approx(expected, abs=1e-5)


def test_centered_triplet_against_hand_computed_value():
    """The same four points, centered on their mean 2.25 and normalised in 1-D: -1, -1 (id 0) and
    1, 1 (id 1): every hardest positive is at 0, every hardest negative at 2, so the loss is 0."""
    x = torch.tensor([[0.0], [1.0], [3.0], [5.0]])
    assert batch_hard_triplet(x, torch.tensor([0, 0, 1, 1]), 0.3, centered=True).item() == pytest.approx(0.0, abs=1e-6)


def test_raw_triplet_rewards_collapsing_features_the_centered_one_does_not():
    """The collapse of the tiny demo, in the loss alone: features with no identity structure yet
    (random) around a common offset. Raw, shrinking their spread lowers the loss towards the
    margin, so a model can lower it by collapsing every image onto one point; centered and
    normalised, neither the offset nor the spread changes it."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(32, 16, generator=g)
    pids = torch.arange(8).repeat_interleave(4)
    offset = 10 * torch.randn(16, generator=g)
    raw = [batch_hard_triplet(offset + s * z, pids, 0.3).item() for s in (1.0, 0.1, 0.01)]
    assert raw[0] > 1.0  # every anchor's hardest positive is farther than its hardest negative
    assert raw[1:] == pytest.approx(
        [0.3 + 0.1 * (raw[0] - 0.3), 0.3 + 0.01 * (raw[0] - 0.3)], abs=1e-3
    )  # margin + spread * const
    centered = [
        batch_hard_triplet(c + s * z, pids, 0.3, centered=True).item() for c in (0, offset) for s in (1.0, 0.1, 0.01)
    ]
    assert centered == pytest.approx([centered[0]] * 6, rel=1e-3) and centered[0] > 0.5


def test_attribute_losses_follow_eqs_8_and_14():
    # two images, r = 2 tokens; cosines 1, 0 (image 0) and -1, 0.6 (image 1)
    pred = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.6, 0.8]]])
    target = torch.tensor([[[2.0, 0.0], [0.0, 1.0]], [[-1.0, 0.0], [1.0, 0.0]]])
    # Eq. 8: (1/r) sum_i sum_j (1 - cos) = (0 + 1 + 2 + 0.4) / 2
    assert attribute_alignment(pred, target).item() == pytest.approx(3.4 / 2, abs=1e-6)
    # Eq. 14 with D keeping cos > 0.5: pairs (0, 0) and (1, 1): (0 + 0.4) / 2
    mask = torch.tensor([[True, False], [False, True]])
    assert attribute_alignment(pred, target, mask).item() == pytest.approx(0.4 / 2, abs=1e-6)
    # the sum over images: twice the batch, twice the loss (the paper's beta is per image)
    doubled = attribute_alignment(torch.cat([pred, pred]), torch.cat([target, target]))
    assert doubled.item() == pytest.approx(3.4, abs=1e-6)


def test_stage1_attribute_alignment_trains_the_pseudo_labels():
    """Eq. 9: L_attrA's gradient reaches the attribute tokens (they are not detached)."""
    from trainer.config import ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig.model_validate(
        {
            "backbone": {"name": "tiny-vit"},
            "image_size": [64, 32],
            "method": {"name": "agreid", "agreid": {"encoder_width": 32, "encoder_layers": 1}},
        }
    )
    model = build_model(cfg, num_classes=4, num_cameras=2)
    labels = torch.tensor([0, 2])
    terms = model.method.stage1_losses(model, torch.randn(2, model.image_encoder.proj_dim), labels)
    terms["attrA"].backward()
    grad = model.prompt_learner.ctx.grad
    assert grad is not None and grad[labels].abs().sum() > 0
    assert grad[[1, 3]].abs().sum() == 0  # identities outside the batch get nothing

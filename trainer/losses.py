"""Losses of CLIP-ReID: supervised contrastive image<->text, batch-hard triplet, label-smoothed ID.

Deviation from the official code, kept on purpose: image and text features are L2-normalised
and multiplied by CLIP's ``logit_scale.exp()`` (100 for OpenAI weights) before the contrastive
and image-to-text losses; the official code uses raw dot products at temperature 1. With
pretrained CLIP the two are close (feature norms make the raw dot product ~ a cosine times a
scale of the same order), but with randomly initialised tiny models (every CPU test and demo)
raw dot products depend on arbitrary feature norms: a norm of 0.1 gives logits of ~0.01 and no
learning signal, a norm of 30 saturates the softmax. The normalised form behaves the same at
every size. Both losses are tested against hand-computed values in ``tests/test_losses.py``.

Second deviation, same reason: the stage-2 triplet compares *batch-centered, L2-normalised*
features (:func:`centered_unit`), not raw ones. Batch-hard triplet on raw features rewards
shrinking them: while hardest positives are farther than hardest negatives (a random-init
model, no identity structure yet), the loss is ``d_pos - d_neg + margin``, which falls towards
the margin as every distance shrinks, and the ID loss, which reads the features through a
BatchNorm (BNNeck), does not care about their scale. Normalising alone does not stop it: the
model then grows a component common to every image, which shrinks distances on the sphere just
as well. On the tiny demo the raw triplet sat at three times the margin for the whole of
stage 2 while the spread of the features fell from 7 to 0.1 around a constant of norm 14, and
different people ended at cosine 0.9999. Centered and normalised, the distances ignore a common
offset and the overall scale, so the only way down is to separate identities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def supcon(
    anchors: torch.Tensor,
    contrast: torch.Tensor,
    anchor_labels: torch.Tensor,
    contrast_labels: torch.Tensor,
    scale: torch.Tensor | float,
) -> torch.Tensor:
    """Supervised contrastive loss: each anchor's log-softmax over ``contrast``, averaged over its positives.

    anchors [N, D], contrast [M, D] (normalised inside), labels [N] / [M]. With images as anchors
    and texts as contrast it is L_i2t; with texts as anchors and images as contrast it is L_t2i,
    where a text's positives are all images of its identity in the batch.
    """
    logits = scale * F.normalize(anchors, dim=1) @ F.normalize(contrast, dim=1).T
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (anchor_labels[:, None] == contrast_labels[None, :]).float()
    return -((positives * log_prob).sum(1) / positives.sum(1).clamp(min=1)).mean()


def centered_unit(features: torch.Tensor) -> torch.Tensor:
    """[N, D] features minus their batch mean, L2-normalised: invariant to a common offset and scale."""
    return F.normalize(features - features.mean(dim=0, keepdim=True), dim=1)


def batch_hard_triplet(
    features: torch.Tensor, labels: torch.Tensor, margin: float = 0.3, centered: bool = False
) -> torch.Tensor:
    """Hardest positive vs hardest negative Euclidean distance per anchor (Hermans et al.);
    ``centered``: between :func:`centered_unit` features (why: the module docstring)."""
    if centered:
        features = centered_unit(features)
    dist = torch.cdist(features, features).clamp(min=1e-12)
    same = labels[:, None] == labels[None, :]
    hardest_pos = (dist * same).max(dim=1).values
    hardest_neg = dist.masked_fill(same, float("inf")).min(dim=1).values
    return F.relu(hardest_pos - hardest_neg + margin).mean()


def id_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.1) -> torch.Tensor:
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


def image_to_text_ce(
    image_feats: torch.Tensor,
    text_feats: torch.Tensor,
    labels: torch.Tensor,
    scale: torch.Tensor | float,
    label_smoothing: float = 0.1,
) -> torch.Tensor:
    """Stage-2 L_i2tce: each image classified against the text features of *all* identities."""
    logits = scale * F.normalize(image_feats, dim=1) @ F.normalize(text_feats, dim=1).T
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)

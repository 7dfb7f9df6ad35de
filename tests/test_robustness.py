"""Occlusion robustness benchmark: corruptions cover what they say, deterministically, and
level 0 reproduces the plain evaluation."""

import json

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_recipe

from trainer.robustness import main as robustness_main
from trainer.robustness import mask_image, paste_distractor


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5])
def test_mask_erases_the_requested_share_of_the_image(fraction):
    img = np.full((128, 64, 3), 7, np.uint8)
    for seed in range(20):  # both variants (band and block) get drawn
        out = mask_image(img, fraction, np.random.default_rng(seed))
        changed = (out != img).any(2).mean()
        assert abs(changed - fraction) < 0.03, (seed, changed)
        assert np.array_equal(out, mask_image(img, fraction, np.random.default_rng(seed)))
    assert np.array_equal(mask_image(img, 0.0, np.random.default_rng(0)), img)


def test_distractor_covers_an_edge_strip_with_the_other_person():
    img = np.zeros((128, 64, 3), np.uint8)
    other = np.full((100, 50, 3), 200, np.uint8)
    out = paste_distractor(img, other, 0.25, np.random.default_rng(1))
    covered = (out == 200).all(2).any(0)
    assert covered.sum() == 16 and (covered[:16].all() or covered[-16:].all())


def test_level_zero_reproduces_plain_evaluation_and_reports_are_written(tmp_path, tiny_dataset):
    from trainer.config import TrainConfig
    from trainer.data.loader import eval_loader, prepare_dataset
    from trainer.eval.evaluate import evaluate_model
    from trainer.models import build_model, save_checkpoint

    recipe = tiny_recipe(tmp_path, data={"dataset": "market1501", "root": str(tiny_dataset)})
    cfg_path = tmp_path / "r.yaml"
    cfg_path.write_text(yaml.safe_dump(recipe))
    cfg = TrainConfig.model_validate(recipe)
    torch.manual_seed(0)
    model = build_model(cfg.model, num_classes=16, num_cameras=3).eval()
    ckpt = save_checkpoint(tmp_path / "m.pt", model, cfg.model, num_cameras=3)
    data = prepare_dataset(cfg.data)
    with torch.no_grad():
        clean = evaluate_model(
            model,
            eval_loader(data.query, cfg),
            eval_loader(data.gallery, cfg),
            cfg.eval,
            torch.device("cpu"),
            progress=False,
        )
    out = tmp_path / "rob"
    results = robustness_main(
        [
            "--config",
            str(cfg_path),
            "--checkpoint",
            str(ckpt),
            "--label",
            "tiny",
            "--levels",
            "0",
            "0.3",
            "--out",
            str(out),
        ]
    )
    for kind in ("mask", "distractor"):
        rows = results["tiny"][kind]
        assert [r["level"] for r in rows] == [0.0, 0.3]
        assert rows[0]["mAP"] == pytest.approx(100 * clean.mAP, abs=1e-6)
        assert rows[1]["mAP"] != rows[0]["mAP"]  # the corruption reached the model
    saved = json.loads((out / "robustness.json").read_text())
    assert saved["results"] == json.loads(json.dumps(results)) and (out / "robustness.png").stat().st_size > 0
    assert (out / "robustness.md").read_text().count("| tiny |") == 2

"""The validation split is carved from training identities: disjoint from test and from training.

The session's synthetic set is read as Market-1501 (its layout), so it is not regenerated."""

from __future__ import annotations

import pytest
from conftest import tiny_recipe

from trainer.config import DataConfig, TrainConfig
from trainer.data.datasets import load_dataset
from trainer.data.loader import prepare_dataset
from trainer.data.validation import carve_validation


def test_validation_ids_are_disjoint_from_test_and_from_the_remaining_training_ids(tiny_dataset):
    full = load_dataset("market1501", tiny_dataset)
    data = prepare_dataset(DataConfig(dataset="market1501", root=tiny_dataset, val_ids=0.25, val_seed=3))
    label_to_pid = {label: pid for pid, label in data.train_pid_map.items()}
    train_pids = {label_to_pid[s.pid] for s in data.train}  # back to dataset pids
    val_pids = {s.pid for s in data.val_query + data.val_gallery}
    test_pids = {s.pid for s in data.query + data.gallery}
    assert len(val_pids) == round(0.25 * full.num_train_pids) == 4
    assert not val_pids & test_pids and not val_pids & train_pids
    assert train_pids | val_pids == set(full.train_pid_map)  # nothing lost
    assert sorted({s.pid for s in data.train}) == list(range(len(train_pids)))  # labels stay 0..N-1
    assert data.query == full.query and data.gallery == full.gallery  # test split untouched
    # one query per (identity, camera), every validation identity in >= 2 cameras, the rest in the gallery
    keys = [(s.pid, s.camid) for s in data.val_query]
    assert len(keys) == len(set(keys)) and all(len({c for p, c in keys if p == pid}) >= 2 for pid in val_pids)
    assert len(data.val_query) + len(data.val_gallery) == len(full.train) - len(data.train)
    # deterministic for a seed, another seed draws other identities
    again = prepare_dataset(DataConfig(dataset="market1501", root=tiny_dataset, val_ids=0.25, val_seed=3))
    other = prepare_dataset(DataConfig(dataset="market1501", root=tiny_dataset, val_ids=0.25, val_seed=4))
    assert {s.pid for s in again.val_query} == {s.pid for s in data.val_query} != {s.pid for s in other.val_query}
    assert not prepare_dataset(DataConfig(dataset="market1501", root=tiny_dataset)).val_query  # default: none


def test_validation_share_that_leaves_too_few_identities_is_a_clear_error(tiny_dataset):
    full = load_dataset("market1501", tiny_dataset)
    with pytest.raises(ValueError, match=r"data.val_ids=0.95 gives 15 validation identities out of 16"):
        carve_validation(full, 0.95)
    with pytest.raises(ValueError, match="val_ids"):
        DataConfig(val_ids=1.0)


def test_trainer_reports_validation_and_takes_the_matching_threshold_from_it(tmp_path):
    from trainer.engine.trainer import Trainer
    from trainer.models.checkpoint import load_checkpoint

    recipe = tiny_recipe(tmp_path, data={"val_ids": 0.25}, stage1={"epochs": 1}, stage2={"epochs": 1})
    trainer = Trainer(TrainConfig.model_validate(recipe), progress=False)
    assert trainer.model.num_classes == 9  # 12 training identities, 3 held out
    result = trainer.fit()
    assert 0 <= result.val_metrics["mAP"] <= 100 and (trainer.out / "eval_val.json").is_file()
    meta = load_checkpoint(result.checkpoint).train_meta
    assert meta["similarity"]["split"] == "val" and meta["val_split"] == {"val_ids": 0.25, "val_seed": 0}
    with pytest.raises(ValueError, match="split must be test or val"):
        trainer.evaluate(split="train")

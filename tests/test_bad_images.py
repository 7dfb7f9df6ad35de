"""One bad image must not end a training run: unreadable files are found when the dataset is
indexed (refused by default with one line, or left out with data.skip_bad_images), and a file
that goes bad mid-run is skipped and counted."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, tiny_recipe

from trainer.config import TrainConfig
from trainer.data.datasets import BadImagesError, check_images, load_dataset
from trainer.engine.trainer import Trainer


def corrupt(path):
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 50, dtype=np.uint8).tobytes())


@pytest.fixture()
def market_with_one_corrupt_jpeg(tiny_dataset, tmp_path):
    """A Market-1501-layout copy of the tiny set with one JPEG replaced by 50 random bytes."""
    root = tmp_path / "Market-1501-v15.09.15"
    shutil.copytree(tiny_dataset, root)
    bad = sorted((root / "bounding_box_train").glob("*.jpg"))[5]
    corrupt(bad)
    return root, bad


def market_recipe(tmp_path, root, **data):
    return tiny_recipe(
        tmp_path, data={"dataset": "market1501", "root": str(root), **data}, stage1={"epochs": 1}, stage2={"epochs": 1}
    )


def test_indexing_refuses_unreadable_images_in_one_line(market_with_one_corrupt_jpeg):
    root, bad = market_with_one_corrupt_jpeg
    with pytest.raises(BadImagesError) as info:
        check_images(load_dataset("market1501", root))
    message = str(info.value)
    assert message.startswith(
        f"1 unreadable image(s) in Market-1501: {bad} (UnidentifiedImageError: cannot identify image file"
    )
    assert message.endswith("set data.skip_bad_images=true to leave them out") and "\n" not in message


def test_many_unreadable_images_list_the_first_few_and_the_count(tiny_dataset, tmp_path):
    root = tmp_path / "m"
    shutil.copytree(tiny_dataset, root)
    for path in sorted((root / "query").glob("*.jpg"))[:7]:
        path.write_bytes(b"")
    with pytest.raises(BadImagesError, match=r"^7 unreadable image\(s\) in Market-1501: ") as info:
        check_images(load_dataset("market1501", root))
    assert str(info.value).count("(UnidentifiedImageError") == 5 and "; ...." in str(info.value)


def test_skipping_leaves_them_out_and_keeps_labels_contiguous(market_with_one_corrupt_jpeg):
    root, bad = market_with_one_corrupt_jpeg
    clean = load_dataset("market1501", root)
    data = check_images(clean, skip=True)
    assert data.skipped == [str(bad)] and len(data.train) == len(clean.train) - 1
    assert str(bad) not in {s.path for s in data.train}
    assert sorted({s.pid for s in data.train}) == list(range(data.num_train_pids))


def test_train_cli_refuses_a_corrupt_jpeg_with_one_line_and_exit_code_2(market_with_one_corrupt_jpeg, tmp_path):
    root, bad = market_with_one_corrupt_jpeg
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps(market_recipe(tmp_path, root)))
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.train", "--config", str(recipe), "--no-progress"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: 1 unreadable image(s) in Market-1501: {bad} (UnidentifiedImageError: cannot identify image file "
        f"'{bad}'). Remove or replace them, or set data.skip_bad_images=true to leave them out"
    ]
    assert "Traceback" not in proc.stderr and not (tmp_path / "run" / "eval_untrained.json").exists()


@pytest.mark.slow
def test_with_skip_bad_images_training_proceeds_and_reports_it(market_with_one_corrupt_jpeg, tmp_path):
    root, bad = market_with_one_corrupt_jpeg
    cfg = TrainConfig.model_validate(market_recipe(tmp_path, root, skip_bad_images=True))
    result = Trainer(cfg, progress=False).fit()
    assert result.checkpoint is not None
    report = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert report["skipped_images"] == {"left_out_at_start": 1, "files": [str(bad)], "failed_reads_during_run": 0}


@pytest.mark.slow
def test_an_image_that_goes_bad_mid_run_is_skipped_and_counted(tiny_dataset, tmp_path):
    root = tmp_path / "m"
    shutil.copytree(tiny_dataset, root)
    cfg = TrainConfig.model_validate(market_recipe(tmp_path, root, workers=1))  # counted across worker processes
    trainer = Trainer(cfg, progress=False)  # indexed and checked: all good
    corrupt(root / "bounding_box_train" / sorted(p.name for p in (root / "bounding_box_train").glob("*.jpg"))[3])
    result = trainer.fit()
    assert result.checkpoint is not None
    report = json.loads((tmp_path / "run" / "eval.json").read_text())["skipped_images"]
    # read once by the stage-1 feature cache and once per stage-2 epoch
    assert report == {"left_out_at_start": 0, "files": [], "failed_reads_during_run": 2}

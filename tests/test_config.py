import pytest
import yaml

from core.configio import ConfigError
from trainer.config import TrainConfig, load_train_config


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_key_names_file_and_field(tmp_path):
    cfg = write(tmp_path / "bad.yaml", {"stage2": {"epochs": 3, "lr_typo": 0.1}})
    with pytest.raises(ConfigError) as err:
        load_train_config(cfg)
    assert str(cfg) in str(err.value)
    assert "stage2.lr_typo: unknown key" in str(err.value)


def test_wrong_type_is_reported(tmp_path):
    cfg = write(tmp_path / "bad.yaml", {"model": {"image_size": "big"}})
    with pytest.raises(ConfigError, match="model.image_size"):
        load_train_config(cfg)


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_train_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_train_config(tmp_path / "nope.yaml")


def test_base_inheritance_and_overrides(tmp_path):
    write(
        tmp_path / "base.yaml",
        {"seed": 5, "stage2": {"epochs": 60, "lr": 1e-5}, "model": {"backbone": {"name": "RN50"}}},
    )
    leaf = write(tmp_path / "leaf.yaml", {"_BASE_": "base.yaml", "stage2": {"lr": 2e-5}})
    cfg = load_train_config(leaf, ["stage2.epochs=7", "model.sie.enabled=true"])
    assert cfg.seed == 5
    assert cfg.stage2.lr == 2e-5 and cfg.stage2.epochs == 7
    assert cfg.model.backbone.name == "RN50" and cfg.model.sie.enabled is True


def test_circular_base_is_an_error(tmp_path):
    write(tmp_path / "a.yaml", {"_BASE_": "b.yaml"})
    write(tmp_path / "b.yaml", {"_BASE_": "a.yaml"})
    with pytest.raises(ConfigError, match="circular"):
        load_train_config(tmp_path / "a.yaml")


def test_batch_must_be_multiple_of_k():
    with pytest.raises(ValueError, match="multiple of data.num_instances"):
        TrainConfig.model_validate({"stage2": {"batch_size": 30}, "data": {"num_instances": 4}})


CONFIGS = __import__("pathlib").Path(__file__).parents[1] / "configs"


@pytest.mark.parametrize("recipe", sorted(p.name for p in CONFIGS.glob("*.yaml") if not p.name.startswith("cams.")))
def test_every_shipped_recipe_validates(recipe):
    load_train_config(CONFIGS / recipe)


@pytest.mark.parametrize("camera_file", sorted(p.name for p in CONFIGS.glob("cams.*.yaml")))
def test_every_shipped_camera_file_validates(camera_file):
    from edge.runtime.config import load_edge_config

    if ("realpair" in camera_file or "mot17" in camera_file) and not (
        CONFIGS.parents[1] / "shared" / "realdata"
    ).is_dir():
        pytest.skip("needs ../shared/realdata")
    cfg = load_edge_config(CONFIGS / camera_file)
    assert cfg.cameras and __import__("pathlib").Path(cfg.detector.weights).exists()


def test_a_relative_path_is_relative_to_the_file_that_sets_it(tmp_path):
    """A camera file learned elsewhere (``_BASE_: ../configs/cams.yaml``) finds the base's models
    and videos where the base names them, and its own outputs beside itself."""
    import shutil

    from conftest import REPO

    from edge.runtime.config import load_edge_config

    configs = tmp_path / "configs"
    (configs / "models").mkdir(parents=True)
    for name in ("detector.onnx", "reid.onnx"):
        shutil.copy(REPO / "edge" / "demo_models" / name, configs / "models" / name)
    (configs / "cams.yaml").write_text(
        yaml.safe_dump(
            {
                "cameras": [{"id": "cam1", "source": "synthetic://tiny?camera=cam1"}],
                "detector": {"weights": "models/detector.onnx"},
                "reid": {"model": "models/reid.onnx"},
                "outputs": {"mot_dir": "mot"},
            }
        )
    )
    site = tmp_path / "learned" / "site.yaml"
    site.parent.mkdir()
    site.write_text(yaml.safe_dump({"_BASE_": "../configs/cams.yaml", "outputs": {"tracklet_log": "day.jsonl.gz"}}))
    cfg = load_edge_config(site)
    assert cfg.detector.weights == str(configs / "models" / "detector.onnx")
    assert cfg.reid is not None and cfg.reid.model == str(configs / "models" / "reid.onnx")
    assert cfg.outputs.mot_dir == str(configs / "mot") and cfg.outputs.tracklet_log == str(site.parent / "day.jsonl.gz")

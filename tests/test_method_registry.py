"""The method registry: recipes name a method, its module brings its config section.

A fifth method is one module with one config class: shown with a toy method registered here,
in the test, which validates, builds, trains and reloads without any project file edited.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml
from conftest import REPO, tiny_recipe
from torch import nn

from core.configio import ConfigError, StrictModel
from trainer.config import ModelConfig, load_train_config
from trainer.methods import registry


@pytest.fixture
def toy_method(monkeypatch):
    """Register ``toy`` (a learnable scale on the baseline embedding) for one test only."""
    from trainer.methods.base import Inference, Method

    registry.method_names()  # import the built-in methods first: they register in the lasting registry
    monkeypatch.setattr(registry, "_METHODS", dict(registry._METHODS))
    monkeypatch.setattr(registry, "_CONFIGS", dict(registry._CONFIGS))

    class ToyConfig(StrictModel):
        scale: float = 2.0

    @registry.register_method("toy", ToyConfig, backbone="vit")
    class Toy(Method):
        @classmethod
        def build(cls, section, image_encoder, text_encoder, num_classes):
            return cls(section.scale)

        def __init__(self, scale: float) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(scale))

        def infer(self, model, feats):
            return Inference(self.scale * super().infer(model, feats).embedding)

    return Toy


def test_a_fifth_method_is_one_class_and_one_config_section(tmp_path, toy_method):
    from trainer.engine.trainer import Trainer
    from trainer.models.checkpoint import load_checkpoint

    recipe = tiny_recipe(
        tmp_path,
        model={
            "backbone": {"name": "tiny-vit"},
            "image_size": [64, 32],
            "method": {"name": "toy", "toy": {"scale": 3.0}},
        },
        stage1={"epochs": 1},
        stage2={"epochs": 1},
    )
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(recipe))
    cfg = load_train_config(path)
    assert cfg.model.method.name == "toy" and cfg.model.method.toy.scale == 3.0
    assert "toy" in registry.method_names()
    trainer = Trainer(cfg, progress=False)
    assert isinstance(trainer.model.method, toy_method) and trainer.model.method.scale.item() == 3.0
    result = trainer.fit()
    loaded = load_checkpoint(result.checkpoint)  # the stored config names the toy and its section
    assert loaded.method == "toy" and loaded.model_config.method.toy.scale == 3.0
    assert torch.equal(loaded.model.method.scale, trainer.model.method.scale.cpu())
    # its backbone requirement is checked like the built-in methods'
    with pytest.raises(ConfigError, match="model.method.name=toy needs a ViT backbone"):
        load_train_config(path, ["model.backbone.name=tiny-rn"])
    with pytest.raises(ConfigError, match=r"model.method.toy.scale: Input should be a valid number"):
        load_train_config(path, ["model.method.toy.scale=big"])


def test_a_name_registered_twice_is_refused(toy_method):
    from trainer.methods.base import Method

    section = registry.method_entry("toy").section
    with pytest.raises(ValueError, match="method 'toy' is already registered by .*Toy"):
        registry.register_method("toy", section)(type("Other", (Method,), {}))
    with pytest.raises(ValueError, match="method 'toy' is already registered with another config section"):
        registry.register_method("toy", StrictModel)(type("Toy2", (Method,), {}))
    with pytest.raises(ValueError, match="must be an identifier and not one of"):
        registry.register_method("lr_factor")(type("Bad", (Method,), {}))


def test_recipes_keep_their_layout_and_errors_name_the_field():
    cfg = load_train_config(REPO / "configs/methods/saga_vit_market1501.yaml")
    assert type(cfg.model.method).__name__ == "SagaMethodConfig" and cfg.model.method.saga.layer == 9
    assert cfg.model.method.frozen_backbone_epochs == 100
    dumped = cfg.model.model_dump(mode="json")["method"]
    assert set(dumped) == {"name", "frozen_backbone_epochs", "stage_lr", "stage_warmup_epochs", "lr_factor", "saga"}
    assert ModelConfig.model_validate(cfg.model.model_dump(mode="json")) == cfg.model  # round trip
    assert ModelConfig().method.name == "baseline" and set(ModelConfig().method.model_dump()) == {
        "name",
        "frozen_backbone_epochs",
        "stage_lr",
        "stage_warmup_epochs",
        "lr_factor",
    }
    with pytest.raises(
        ConfigError,
        match=r"model.method: Value error, unknown method 'sagaa'; "
        r"registered: agreid, baseline, mscsa_tgi, rganet, saga",
    ):
        load_train_config(REPO / "configs/methods/saga_vit_market1501.yaml", ["model.method.name=sagaa"])
    with pytest.raises(
        ConfigError, match=r"model.method.name is 'rganet' but the recipe also sets the section of saga"
    ):
        load_train_config(REPO / "configs/methods/saga_vit_market1501.yaml", ["model.method.name=rganet"])
    with pytest.raises(ConfigError, match=r"model.method.saga.blocks: Input should be greater than or equal to 1"):
        load_train_config(REPO / "configs/methods/saga_vit_market1501.yaml", ["model.method.saga.blocks=0"])
    model = ModelConfig(method={"name": "rganet"})
    model.method = {"name": "agreid", "agreid": {"beta": 0.5}}  # assignment is validated the same way
    assert model.method.agreid.beta == 0.5


def test_old_checkpoints_with_every_methods_section_still_load(tmp_path):
    """Checkpoints written before the registry stored all four sections under model.method."""
    from trainer.models import build_model
    from trainer.models.checkpoint import load_checkpoint, save_checkpoint

    cfg = ModelConfig(backbone={"name": "tiny-vit"}, image_size=(64, 32), method={"name": "rganet"})
    path = save_checkpoint(tmp_path / "m.pt", build_model(cfg, 3, 2), cfg, 2)
    payload = torch.load(path, weights_only=True)
    payload["model_config"]["method"].update(
        {"agreid": {"beta": 0.01}, "saga": {"layer": 9}, "mscsa_tgi": {"tgi": True}}
    )
    torch.save(payload, path)
    assert load_checkpoint(path).model_config.method.name == "rganet"


def test_the_config_imports_no_torch_and_no_method_module():
    code = (
        "import sys; from trainer.config import TrainConfig; TrainConfig();"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('trainer.methods.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "['trainer.methods.registry']"

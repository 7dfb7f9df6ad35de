"""Bring your own weights: an OpenAI CLIP file loads into every full-size recipe.

No download: the file is built here from open_clip's own ViT-B-16 and RN50 architectures
(random values) with OpenAI's key layout, checked against OpenAI's known key names and shapes,
plus the three bookkeeping entries OpenAI archives carry. Each recipe's model is then built by
the project's real path (``build_model`` -> ``build_clip`` -> ``load_clip_weights``) and checked:

- every CLIP tensor landed where it belongs (not only "no error": values compared);
- the positional embeddings were resampled to the ReID grid without transposing rows and
  columns (the file's grid encodes each cell's row and column), for 16-px and overlapping 12-px
  patches and for the ResNet attention pool;
- SIE adds one trained embedding per camera and changes the feature;
- prompt texts (identity prompts, AG-ReID attribute prompts, RGANet regions, SAGA anchors) are
  embedded with the file's token embedding, SAGA's anchor context starts from its phrase's
  tokens and its refinement blocks from the file's block 9.

Slow (about a minute on two CPU cores): one full-size model per distinct model section.
"""

from __future__ import annotations

import gc
from pathlib import Path

import open_clip
import pytest
import torch
from conftest import REPO
from open_clip.model import CLIP

from trainer.clip.text import SlotPrompts, tokenize
from trainer.config import load_train_config
from trainer.models.reid import build_model

pytestmark = pytest.mark.slow

# A few entries of the real OpenAI archives (key -> shape), as listed by
# ``torch.jit.load("ViT-B-16.pt").state_dict()`` / ``RN50.pt``: the file built below must have them.
OPENAI_LAYOUT = {
    "ViT-B-16": {
        "visual.conv1.weight": (768, 3, 16, 16),
        "visual.class_embedding": (768,),
        "visual.positional_embedding": (197, 768),
        "visual.proj": (768, 512),
        "visual.transformer.resblocks.11.attn.in_proj_weight": (2304, 768),
        "visual.transformer.resblocks.8.mlp.c_fc.weight": (3072, 768),
        "visual.ln_post.weight": (768,),
        "token_embedding.weight": (49408, 512),
        "positional_embedding": (77, 512),
        "transformer.resblocks.11.mlp.c_proj.weight": (512, 2048),
        "text_projection": (512, 512),
        "ln_final.weight": (512,),
        "logit_scale": (),
    },
    "RN50": {
        "visual.conv1.weight": (32, 3, 3, 3),
        "visual.bn1.running_mean": (32,),
        "visual.layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "visual.layer4.2.conv3.weight": (2048, 512, 1, 1),
        "visual.attnpool.positional_embedding": (50, 2048),
        "visual.attnpool.c_proj.weight": (1024, 2048),
        "token_embedding.weight": (49408, 512),
        "text_projection": (512, 1024),
        "logit_scale": (),
    },
}
OPENAI_EXTRAS = {"input_resolution": 224, "context_length": 77, "vocab_size": 49408}
POS_KEY = {"ViT-B-16": "visual.positional_embedding", "RN50": "visual.attnpool.positional_embedding"}
CAMERAS = {"market1501": 6, "dukemtmc": 8, "occluded_duke": 8, "msmt17": 15}


def openai_style_weights(arch: str, path: Path) -> dict[str, torch.Tensor]:
    """Random CLIP weights of ``arch`` in OpenAI's layout, saved to ``path``; returns them.

    The positional grid's channels 0 and 1 hold each cell's row and column index, so a resample
    that mixes up height and width is visible.
    """
    torch.manual_seed(0)
    state = CLIP(**open_clip.get_model_config(arch), quick_gelu=True).state_dict()
    for key, shape in OPENAI_LAYOUT[arch].items():
        assert tuple(state[key].shape) == shape, f"open_clip's {arch} no longer has OpenAI's layout at {key}"
    pos = state[POS_KEY[arch]]
    side = int(round((pos.shape[0] - 1) ** 0.5))
    rows, cols = torch.meshgrid(
        torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32), indexing="ij"
    )
    pos[1:, 0], pos[1:, 1] = rows.flatten(), cols.flatten()
    state["logit_scale"] = torch.tensor(4.6052)  # log(100), a 0-d tensor as in the archives
    torch.save({**state, **{k: torch.tensor(v) for k, v in OPENAI_EXTRAS.items()}}, path)
    return state


def full_size_recipes() -> list[Path]:
    recipes = sorted(REPO.glob("configs/vit_*.yaml")) + sorted(REPO.glob("configs/rn50_*.yaml"))
    return recipes + sorted(p for p in REPO.glob("configs/methods/*.yaml") if not p.name.startswith("tiny_"))


def check_grid(pos: torch.Tensor, grid: tuple[int, int], side: int) -> None:
    """Channel 0 (row index) grows down the rows and is constant along a row; channel 1 the reverse."""
    cells = pos[1:, :2].reshape(grid[0], grid[1], 2)
    row, col = cells[..., 0], cells[..., 1]
    assert (row.diff(dim=0) > 0).all() and row.std(dim=1).max() < 1e-4, (
        "row index not preserved (rows/columns mixed up?)"
    )
    assert (col.diff(dim=1) > 0).all() and col.std(dim=0).max() < 1e-4, "column index not preserved"
    assert row[0, 0] < 1 and row[-1, 0] > side - 2 and col[0, 0] < 1.5 and col[0, -1] > side - 2.5, (
        "grid does not span the file's grid"
    )


def check_clip_tensors(model, state: dict[str, torch.Tensor]) -> None:
    """Every file tensor is in the model, under ``image_encoder``/``text_encoder``, unchanged."""
    own = model.state_dict()
    resampled = {"visual.positional_embedding", "visual.attnpool.positional_embedding"}
    unmatched = []
    for key, value in state.items():
        if key in resampled:
            continue
        if key == "logit_scale":
            assert torch.equal(own["logit_scale"], value)
            continue
        if key.startswith("visual."):
            name = key.removeprefix("visual.")
            candidates = [f"image_encoder.{name}", f"image_encoder.body.{name}"]
        else:
            candidates = [f"text_encoder.{key}"]
        found = [c for c in candidates if c in own]
        if not found:
            unmatched.append(key)
            continue
        assert torch.equal(own[found[0]], value), f"{key} changed on its way into the model"
    assert not unmatched, f"file tensors with no place in the model: {unmatched[:5]}"


def check_prompts(model, state: dict[str, torch.Tensor]) -> int:
    """Every prompt's fixed words are the file's token embeddings of its text."""
    table = state["token_embedding.weight"]
    count = 0
    for module in model.modules():
        if isinstance(module, SlotPrompts):
            assert torch.equal(module.base, table[module.tokens]), (
                "prompt words not embedded with the file's token embedding"
            )
            count += 1
    return count


def check_saga(model, state: dict[str, torch.Tensor], layer: int) -> None:
    table = state["token_embedding.weight"]
    saga = model.method
    for k, phrase in enumerate(saga.cfg.phrases[:3]):
        ids = tokenize([phrase])[0]
        words = ids[1 : int(ids.argmax())]  # the phrase's BPE tokens, without start/end
        emb = table[words]
        # n_ctx (4) tokens sampled from the phrase, or the phrase then its mean, plus 0.01 noise
        expected = (
            emb[torch.linspace(0, len(emb) - 1, 4).long()]
            if len(emb) >= 4
            else torch.cat([emb, emb.mean(0).expand(4 - len(emb), -1)])
        )
        assert (saga.prompts.ctx[k] - expected).abs().max() < 0.06, (
            f"SAGA context of {phrase!r} does not start from its tokens"
        )
    block = f"visual.transformer.resblocks.{layer - 1}."
    for refine in saga.blocks:
        assert torch.equal(refine.mlp[0].weight, state[block + "mlp.c_fc.weight"])
        assert torch.equal(refine.mlp[2].weight, state[block + "mlp.c_proj.weight"])


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("byow")
    files = {}
    for arch in ("ViT-B-16", "RN50"):
        path = folder / f"{arch}.pt"
        state = openai_style_weights(arch, path)
        files[arch] = (path, state)
    return files


def test_every_full_size_recipe_loads_openai_clip_weights(weight_files):
    recipes = full_size_recipes()
    # one build per distinct model section: recipes that differ only in their dataset's camera count
    # build the same model with another SIE table size (PyTorch's random init of a full-size CLIP
    # takes seconds)
    builds: dict[str, tuple[str, object, int]] = {}  # distinct model sections -> (recipe, config, cameras)
    for recipe in recipes:
        cfg = load_train_config(recipe)
        arch = cfg.model.backbone.name
        assert arch in weight_files and cfg.model.backbone.quick_gelu, f"{recipe.name}: OpenAI weights need quick_gelu"
        cams = CAMERAS[cfg.data.dataset]
        cfg = load_train_config(recipe, [f"model.backbone.pretrained={weight_files[arch][0]}"])
        builds.setdefault(cfg.model.model_dump_json(), (recipe.name, cfg, cams))
        if recipe.name == "vit_market1501.yaml":  # CLIP-ReID's overlapping patches (OLP)
            olp = load_train_config(
                recipe, [f"model.backbone.pretrained={weight_files[arch][0]}", "model.patch_stride=12"]
            )
            builds[olp.model.model_dump_json()] = (recipe.name + " + patch_stride=12", olp, cams)
    methods = {cfg.model.method.name for _, cfg, _ in builds.values()}
    assert methods == {"baseline", "agreid", "rganet", "saga", "mscsa_tgi"}, methods
    grids = set()
    for name, cfg, cams in builds.values():
        arch = cfg.model.backbone.name
        path, state = weight_files[arch]
        model = build_model(cfg.model, num_classes=5, num_cameras=cams).eval()
        check_clip_tensors(model, state)
        assert check_prompts(model, state) >= 1, name
        enc = model.image_encoder
        side = 14 if arch == "ViT-B-16" else 7
        if arch == "ViT-B-16":
            stride = cfg.model.patch_stride or 16
            grid = ((256 - 16) // stride + 1, (128 - 16) // stride + 1)
            assert enc.grid == grid and enc.positional_embedding.shape == (1 + grid[0] * grid[1], 768), name
            assert torch.equal(enc.positional_embedding[0], state[POS_KEY[arch]][0]), "class-token position changed"
            check_grid(enc.positional_embedding.detach(), grid, side)
            assert enc.sie_embed is not None and enc.sie_embed.shape == (cams, 768), f"{name}: SIE missing"
        else:
            grid = (16, 8)  # last stride 1: 256 x 128 / 16
            pos = enc.body.attnpool.positional_embedding.detach()
            assert enc.grid == grid and pos.shape == (1 + 16 * 8, 2048), name
            check_grid(pos, grid, side)
            assert enc.num_cameras == 0
        grids.add(enc.grid)
        if cfg.model.method.name == "saga":
            check_saga(model, state, cfg.model.method.saga.layer)
        torch.manual_seed(1)
        images = torch.randn(2, 3, 256, 128)
        with torch.no_grad():
            out = model.infer(images, torch.tensor([0, 1]))
            assert out.embedding.shape == (2, model.embedding_dim) and torch.isfinite(out.embedding).all(), name
            if arch == "ViT-B-16":  # SIE is used: another camera, another feature
                other = model.infer(images, torch.tensor([2, 3])).embedding
                assert (other - out.embedding).abs().max() > 1e-4, f"{name}: the camera embedding changes nothing"
        del model
        gc.collect()
    assert {(16, 8), (21, 10)} <= grids

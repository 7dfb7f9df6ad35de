import copy

import pytest
import torch

from trainer.clip.image_encoders import ReIDViT
from trainer.clip.text import tokenize
from trainer.config import ModelConfig
from trainer.models import (
    CheckpointError,
    PretrainedWeightsError,
    build_clip,
    build_model,
    load_checkpoint,
    save_checkpoint,
)


@pytest.mark.parametrize("arch", ["tiny-vit", "ViT-B-16"])
def test_vit_matches_open_clip_encode_image(arch):
    """SIE off, no overlap, 224x224: our forward equals open_clip's encode_image on the same weights."""
    torch.manual_seed(0)
    clip = build_clip(arch).eval()
    encoder = ReIDViT(copy.deepcopy(clip.visual), (224, 224)).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ours = encoder(x).proj_feat
        ref = clip.encode_image(x)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_vit_b16_reid_shapes_overlap_and_sie():
    cfg = ModelConfig(
        backbone={"name": "ViT-B-16"},
        image_size=(256, 128),
        patch_stride=12,
        sie={"enabled": True},
        intermediate_layers=[9],
    )
    model = build_model(cfg, num_classes=5, num_cameras=6).eval()
    enc = model.image_encoder
    assert enc.grid == (21, 10)  # (256-16)//12+1, (128-16)//12+1
    assert enc.positional_embedding.shape == (1 + 21 * 10, 768)
    x, cams = torch.randn(2, 3, 256, 128), torch.tensor([0, 5])
    with torch.no_grad():
        out = model(x, cams)
        feat = model.encode(x, cams)
    assert feat.shape == (2, 768 + 512)
    assert out.features.tokens[9].shape == (2, 1 + 21 * 10, 768)
    assert out.logits.shape == (2, 5) and out.proj_logits.shape == (2, 5)


def test_sie_changes_features_only_with_camera():
    cfg = ModelConfig(backbone={"name": "tiny-vit"}, image_size=(64, 32), sie={"enabled": True, "mode": "all"})
    model = build_model(cfg, 3, 2).eval()
    x = torch.randn(1, 3, 64, 32).repeat(2, 1, 1, 1)
    with torch.no_grad():
        f = model.encode(x, torch.tensor([0, 1]))
    assert not torch.allclose(f[0], f[1])
    with pytest.raises(ValueError, match="camids"):
        model.encode(x)


def test_rn50_contract_shapes():
    cfg = ModelConfig(backbone={"name": "RN50"}, image_size=(256, 128), intermediate_layers=[1, 2, 3, 4])
    model = build_model(cfg, num_classes=4, num_cameras=2).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 256, 128))
    assert out.global_feat.shape == (2, 2048) and out.proj_feat.shape == (2, 1024)
    assert [tuple(out.features.maps[i].shape[1:]) for i in (1, 2, 3, 4)] == [
        (256, 64, 32),
        (512, 32, 16),
        (1024, 16, 8),
        (2048, 16, 8),
    ]
    assert model.embedding_dim == 3072


def test_wrong_image_size_is_a_clear_error():
    model = build_model(ModelConfig(backbone={"name": "tiny-vit"}, image_size=(64, 32)), 3, 1)
    with pytest.raises(ValueError, match=r"expected images of size \(64, 32\)"):
        model.encode(torch.randn(1, 3, 128, 64))


def test_prompt_learner_fills_ctx_slots_and_only_ctx_trains():
    model = build_model(ModelConfig(backbone={"name": "tiny-vit"}, image_size=(64, 32)), 3, 1)
    pl = model.prompt_learner
    prompts, tokens = pl(torch.tensor([0, 2]))
    plain = model.text_encoder.embed_tokens(tokenize(["A photo of a X X X X person."]))[0]
    same = torch.isclose(prompts[0], plain).all(dim=1)
    assert same.tolist()[:5] == [True] * 5 and not same[5:9].any() and same[9:].all()  # SOS + 4 words, 4 ctx, rest
    torch.testing.assert_close(prompts[1, 5:9], pl.ctx[2])
    for p in model.parameters():
        p.requires_grad_(False)
    pl.ctx.requires_grad_(True)
    model.text_features(torch.tensor([1])).sum().backward()
    assert pl.ctx.grad[1].abs().sum() > 0 and pl.ctx.grad[0].abs().sum() == 0


def test_load_open_clip_state_dict_and_torchscript_archive(tmp_path):
    torch.manual_seed(1)
    src = build_clip("tiny-vit").eval()
    sd_path = tmp_path / "clip.pt"
    torch.save(src.state_dict(), sd_path)
    loaded = build_clip("tiny-vit", pretrained=sd_path)
    torch.testing.assert_close(loaded.visual.proj, src.visual.proj)

    class Archive(torch.nn.Module):  # an OpenAI-style TorchScript archive holding the same tensors
        def __init__(self, clip):
            super().__init__()
            for name, child in clip.named_children():
                setattr(self, name, child)
            self.positional_embedding = clip.positional_embedding
            self.text_projection = clip.text_projection
            self.logit_scale = clip.logit_scale
            self.register_buffer("input_resolution", torch.tensor(224))

        def forward(self, x):
            return x

    ts_path = tmp_path / "ViT-tiny.pt"
    torch.jit.save(torch.jit.script(Archive(src)), ts_path)
    from_ts = build_clip("tiny-vit", pretrained=ts_path)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(from_ts.encode_image(x), src.encode_image(x))


def test_bad_pretrained_files_name_path_and_keys(tmp_path):
    with pytest.raises(PretrainedWeightsError, match="not found: .*missing.pt"):
        build_clip("tiny-vit", pretrained=tmp_path / "missing.pt")
    rn = tmp_path / "rn.pt"
    torch.save(build_clip("tiny-rn").state_dict(), rn)
    with pytest.raises(PretrainedWeightsError) as err:
        build_clip("tiny-vit", pretrained=rn)
    msg = str(err.value)
    assert str(rn) in msg and "missing: " in msg and "visual.conv1.weight" in msg and "unexpected: " in msg


def test_checkpoint_round_trip_and_errors(tmp_path):
    cfg = ModelConfig(backbone={"name": "tiny-vit"}, image_size=(64, 32), sie={"enabled": True})
    model = build_model(cfg, 4, 3).eval()
    text = torch.randn(4, 128)
    path = save_checkpoint(
        tmp_path / "m.pt", model, cfg, num_cameras=3, text_features=text, train_meta={"dataset": "x"}
    )
    loaded = load_checkpoint(path)
    x, cams = torch.randn(2, 3, 64, 32), torch.tensor([0, 2])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.encode(x, cams), model.encode(x, cams))
    assert loaded.num_cameras == 3 and loaded.method == "baseline" and loaded.train_meta["dataset"] == "x"
    torch.testing.assert_close(loaded.text_features, text)
    emb = loaded.model.embed(x, cams)
    assert emb.global_.shape == (2, 192 + 128)
    assert abs(float((emb.global_**2).sum(1).mean()) - 1) < 1e-5

    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "garbage.pt")

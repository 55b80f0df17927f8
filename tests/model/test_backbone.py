import pytest
import torch
from safetensors.torch import save_file

from vifi.errors import VifiError
from vifi.model.backbone import build_clip, infer_arch_from_state_dict, load_clip

# OpenAI layout convention: 64-wide attention heads, so the shapes determine the architecture.
CFG64 = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 128, "patch_size": 16,
                                         "head_width": 64},
         "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 2},
         "quick_gelu": True}


@pytest.fixture
def clip64():
    torch.manual_seed(0)
    return build_clip(CFG64)


@pytest.mark.parametrize("fmt", ["pt", "pt-module-prefix", "safetensors"])
def test_state_dict_files_load_with_the_same_outputs(tmp_path, clip64, fmt):
    sd = clip64.state_dict()
    if fmt == "safetensors":
        path = tmp_path / "w.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        path = tmp_path / "w.pt"
        prefix = "module." if fmt == "pt-module-prefix" else ""
        torch.save({"state_dict": {prefix + k: v for k, v in sd.items()}}, path)
    model, cfg = load_clip("ViT-B-16", str(path))
    assert cfg == CFG64
    image = torch.randn(1, 3, 32, 32)
    tokens = torch.randint(1, 49000, (2, 77))
    tokens[:, 10] = 49407
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(image), clip64.encode_image(image))
        torch.testing.assert_close(model.encode_text(tokens), clip64.encode_text(tokens))


def test_infer_arch_reads_shapes(clip64):
    assert infer_arch_from_state_dict(clip64.state_dict()) == CFG64


def test_missing_weights_for_a_real_architecture_is_refused():
    with pytest.raises(VifiError, match="--clip"):
        load_clip("ViT-B-16", None)
    with pytest.raises(VifiError, match="file not found"):
        load_clip("ViT-B-16", "/nowhere/ViT-B-16.pt")


def test_non_clip_state_dict_is_refused(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"linear.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(VifiError, match="not a ViT CLIP state dict"):
        load_clip("ViT-B-16", str(path))

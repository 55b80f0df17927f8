"""Weights from anywhere: open_clip tags with their own QuickGELU setting, hf-hub:ORG/NAME from the cache without
network, and a quick, whole error line when the weights are neither cached nor reachable."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from tests.conftest import ramp_frames, write_video
from vifi.errors import VifiError
from vifi.model.backbone import TINY_CLIP, build_clip, load_clip
from vifi.model.pretrained import set_cache_dir, tag_quick_gelu

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once


def test_quick_gelu_follows_the_tag_not_a_blanket_default():
    assert tag_quick_gelu("ViT-B-16", "openai") is True  # OpenAI trained with QuickGELU
    assert tag_quick_gelu("ViT-B-16", "laion2b_s34b_b88k") is False  # LAION with nn.GELU
    assert tag_quick_gelu("ViT-B-16-quickgelu", "metaclip_400m") is True
    with pytest.raises(VifiError, match="known tags for ViT-B-16: .*openai"):
        tag_quick_gelu("ViT-B-16", "no-such-tag")


def _fake_hub_cache(cache, repo_id, files: dict):
    """The layout huggingface_hub keeps: models--ORG--NAME/refs/main -> snapshots/<rev>/<files>."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    for name, write in files.items():
        write(snap / name)


@pytest.fixture
def tiny_hub(tmp_path):
    torch.manual_seed(1)
    reference = build_clip(TINY_CLIP)
    cache = tmp_path / "hub-cache"
    _fake_hub_cache(cache, "vifi-test/tiny-clip", {
        "open_clip_config.json": lambda p: p.write_text(json.dumps({"model_cfg": TINY_CLIP})),
        "open_clip_model.safetensors": lambda p: save_file(
            {k: v.contiguous() for k, v in reference.state_dict().items()}, str(p)),
    })
    yield cache, reference
    set_cache_dir(None)


def test_hf_hub_weights_load_from_the_cache(tiny_hub):
    cache, reference = tiny_hub
    set_cache_dir(cache)
    model, cfg = load_clip("ViT-B-16", "hf-hub:vifi-test/tiny-clip")
    assert cfg == TINY_CLIP
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(image), reference.encode_image(image))


def _offline_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return {**env, "HF_ENDPOINT": UNREACHABLE, **extra}


def _zeroshot(tmp_path, *args, env):
    video = write_video(tmp_path / "v.mp4", ramp_frames(8, 64, 64))
    return subprocess.run([sys.executable, "-m", "vifi", "zeroshot", video, "--labels", "a,b", "--device", "cpu",
                           *map(str, args)], capture_output=True, text=True, timeout=240, env=env)


def test_cached_hub_model_needs_no_network(tmp_path, tiny_hub):
    cache, _ = tiny_hub
    proc = _zeroshot(tmp_path, "--clip", "hf-hub:vifi-test/tiny-clip", "--cache-dir", cache, "--frames", "2",
                     "--json", env=_offline_env())
    assert proc.returncode == 0, proc.stderr
    assert sum(x["prob"] for x in json.loads(proc.stdout)[0]["labels"]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("clip,extra_env,reason", [
    ("openai", {}, f"{UNREACHABLE} cannot be reached"),
    ("hf-hub:vifi-test/not-cached", {}, f"{UNREACHABLE} cannot be reached"),
    ("openai", {"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
])
def test_uncached_weights_without_network_fail_with_the_whole_message(tmp_path, clip, extra_env, reason):
    empty = tmp_path / "empty-cache"
    proc = _zeroshot(tmp_path, "--clip", clip, "--cache-dir", empty, env=_offline_env(**extra_env))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --clip {clip}")
    assert reason in lines[0] and f"not in the cache ({empty})" in lines[0]
    assert lines[0].endswith("or pass a local weight file with --clip PATH")  # the whole message, not cut

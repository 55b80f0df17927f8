"""`hf-hub:ORG/NAME` checkpoints through huggingface_hub's cache, offline: a pre-populated cache (HF_HOME in tmp,
HF_HUB_OFFLINE=1) loads the same model as the local file, in Python and with `--checkpoint`; a repository that is
not cached fails at once with one line."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

import vifi
from tests.api.test_api import tiny_checkpoint
from vifi.errors import CheckpointError
from vifi.model.pretrained import set_cache_dir

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _cache(home, repo, files):
    """huggingface_hub's cache layout: hub/models--ORG--NAME/{refs/main, snapshots/COMMIT/FILE}."""
    folder = home / "hub" / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(COMMIT)
    for name, src in files.items():
        (folder / "snapshots" / COMMIT / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, folder / "snapshots" / COMMIT / name)
    return home / "hub"


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    local = tiny_checkpoint(tmp_path / "tiny.safetensors", seed=3)
    other = tiny_checkpoint(tmp_path / "other.safetensors", seed=4)
    home = tmp_path / "hf"
    hub = _cache(home, "someone/tiny-vifi", {"vifi.safetensors": local, "variants/other.safetensors": other})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    set_cache_dir(hub)
    yield home, local, other
    set_cache_dir(None)


def test_load_from_a_cached_hub_repository_equals_the_local_file(offline_hub):
    home, local, other = offline_hub
    hub = vifi.load("hf-hub:someone/tiny-vifi", device="cpu")
    assert hub.facts.path.startswith(str(home)) and hub.frames == 4
    text = ["juggling", "cooking"]
    torch.testing.assert_close(hub.encode_text(text), vifi.load(local, device="cpu").encode_text(text),
                               atol=0, rtol=0)
    explicit = vifi.load("hf-hub:someone/tiny-vifi/variants/other.safetensors", device="cpu")
    torch.testing.assert_close(explicit.encode_text(text), vifi.load(other, device="cpu").encode_text(text),
                               atol=0, rtol=0)


def test_offline_and_not_cached_is_one_line(offline_hub):
    with pytest.raises(CheckpointError, match="not in the cache .* HF_HUB_OFFLINE is set"):
        vifi.load("hf-hub:someone/absent")
    with pytest.raises(CheckpointError, match="hf-hub:ORG/NAME"):
        vifi.load("hf-hub:no-name")
    with pytest.raises(CheckpointError, match="none of vifi.safetensors, model.safetensors|not in the cache"):
        vifi.load("hf-hub:someone/tiny-vifi/missing.safetensors")


def test_cli_checkpoint_from_the_hub_cache(offline_hub, demo_data):
    home, local, _ = offline_hub
    video = sorted(demo_data["root"].rglob("*.mp4"))[0]
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)

    def zeroshot(ckpt):
        return subprocess.run([sys.executable, "-m", "vifi", "zeroshot", str(video), "--labels", "a,b,c",
                               "--checkpoint", ckpt, "--device", "cpu", "--out", "-"], capture_output=True,
                              text=True, env=env, timeout=300)

    hub, plain = zeroshot("hf-hub:someone/tiny-vifi"), zeroshot(str(local))
    assert hub.returncode == 0, hub.stderr
    assert hub.stdout == plain.stdout and hub.stdout.count("\n") == 4
    absent = zeroshot("hf-hub:someone/absent")
    assert absent.returncode == 2
    assert absent.stderr.strip().splitlines() == [
        f"error: --checkpoint hf-hub:someone/absent: someone/absent on the Hugging Face Hub is not in the cache "
        f"({home / 'hub'}) and HF_HUB_OFFLINE is set; connect once to download them, point --cache-dir at a folder "
        "that holds them, or pass a local weight file with --checkpoint PATH"]

"""The Python API gives the CLI's numbers: classify = `vifi zeroshot --out -`, encode_video = the rows `vifi index`
stores, encode_text = the normalised text tower through the template; README's "From Python" block runs as
written; mistakes raise the typed vifi.errors exceptions with the CLI's one-line messages."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vifi
from tests.conftest import write_video
from tests.search.test_index_cli import _tiny_checkpoint as tiny_checkpoint
from vifi.data.demo import class_names
from vifi.errors import CheckpointError, InputError, VideoError, VifiError
from vifi.model.backbone import TINY_CLIP

README = Path(__file__).resolve().parents[2] / "README.md"
SAME = 1e-5  # float32 over batches of other sizes (docs/search.md's index tests measured up to 3.5e-6)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The index tests' tiny model: 4 frames of 64 px, the demo's class names."""
    return tiny_checkpoint(tmp_path_factory.mktemp("api") / "tiny.safetensors")


@pytest.fixture(scope="module")
def model(checkpoint):
    return vifi.load(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def videos(demo_data):
    return sorted(Path(demo_data["root"]).rglob("*.mp4"))[::7][:5]


def _vifi(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "vifi", *map(str, args)], capture_output=True, text=True,
                          timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_facts_come_from_the_checkpoint(model, checkpoint):
    assert (model.frames, model.input_size, model.template) == (4, 64, "a photo of a {}.")
    assert model.class_names == tuple(class_names())
    assert model.device == torch.device("cpu") and str(checkpoint) in repr(model)
    assert vifi.load(checkpoint, device="cpu", frames=2, vanilla=True).template is None


def test_classify_equals_vifi_zeroshot_csv(model, checkpoint, videos):
    labels = class_names()[:4]
    table = model.classify(videos, labels)
    cli = _vifi("zeroshot", *videos, "--labels", ",".join(labels), "--checkpoint", checkpoint, "--device", "cpu",
                "--out", "-").stdout
    assert table.to_csv(index=False) == cli  # the same rows, order and rounding
    assert len(table) == len(videos) * len(labels)
    assert model.classify(videos[0], ",".join(labels)).equals(table[table.video == str(videos[0])]
                                                              .reset_index(drop=True))


def test_encode_video_equals_the_rows_vifi_index_stores(model, checkpoint, videos, tmp_path):
    from vifi.search.index_folder import IndexFolder

    index = tmp_path / "idx"
    _vifi("index", *videos, "--checkpoint", checkpoint, "--out", index, "--workers", "0", "--device", "cpu")
    entries, stored, _ = IndexFolder(index).read()
    by_path = {e.path: stored[i] for i, e in enumerate(entries)}
    ours = model.encode_video(videos, batch=2)
    assert ours.shape == (len(videos), TINY_CLIP["embed_dim"]) and ours.dtype == torch.float32
    for video, row in zip(videos, ours):
        np.testing.assert_allclose(row.numpy(), by_path[str(video.resolve())], atol=SAME)
    # tensors from read_video give the same rows as the paths
    clips = [vifi.read_video(v, frames=model.frames, size=model.input_size) for v in videos[:2]]
    assert clips[0].dtype == torch.uint8 and clips[0].shape == (1, 4, 3, 64, 64)
    torch.testing.assert_close(model.encode_video(clips), ours[:2], atol=SAME, rtol=0)


def test_encode_text_is_the_normalised_text_tower_through_the_template(model):
    net = model.net
    with torch.no_grad():
        naive = F.normalize(net.encode_text(net.tokenize(["a photo of a juggling.", "cooking"])).float(), dim=-1)
    torch.testing.assert_close(model.encode_text("juggling"), naive[:1], atol=1e-6, rtol=0)
    torch.testing.assert_close(model.encode_text(["cooking"], template=False), naive[1:], atol=1e-6, rtol=0)


def test_views_average_normalised_views(model, videos):
    clips = vifi.read_video(videos[0], frames=4, views="2x3", size=64)
    assert clips.shape == (6, 4, 3, 64, 64)
    per_view = model.encode_video([c[None] for c in clips])  # each view alone
    expected = F.normalize(per_view.mean(0, keepdim=True), dim=-1)
    torch.testing.assert_close(model.encode_video(videos[0], views="2x3"), expected, atol=SAME, rtol=0)


def _readme_python_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## From Python", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_from_python_runs_as_written(checkpoint, demo_data, tmp_path, monkeypatch):
    code = _readme_python_block()
    run = re.search(r'vifi\.load\("([^"]+)"\)', code).group(1)
    (tmp_path / run / "checkpoints").mkdir(parents=True)  # a run folder holding the tiny model
    shutil.copy(checkpoint, tmp_path / run / "checkpoints" / "final.safetensors")
    for name, video in zip(("a.mp4", "b.mp4"), sorted(Path(demo_data["root"]).rglob("*.mp4"))[::10]):
        shutil.copy(video, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["clips"].shape == (1, 4, 3, 224, 224) and scope["clips"].dtype == torch.uint8
    assert scope["v"].shape == (2, TINY_CLIP["embed_dim"])
    torch.testing.assert_close(scope["v"].norm(dim=-1), torch.ones(2))
    assert scope["t"].shape == (2, TINY_CLIP["embed_dim"])
    df = scope["df"]
    assert list(df.columns) == ["video", "label", "prob"] and sorted(df.label) == ["cooking", "juggling"]
    assert abs(df.prob.sum() - 1) < 1e-5


def _cli_error(*args) -> str:
    proc = _vifi(*args, check=False)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ")
    return line.removeprefix("error: ")


def test_typed_errors_carry_the_cli_messages(checkpoint, model, videos, tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(CheckpointError) as err:
        vifi.load(missing)
    assert str(err.value) == _cli_error("zeroshot", videos[0], "--labels", "a,b", "--checkpoint", missing)

    not_vifi = tmp_path / "x.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(not_vifi))
    with pytest.raises(CheckpointError, match="is not a vifi checkpoint"):
        vifi.load(not_vifi)

    gone = tmp_path / "gone.mp4"
    with pytest.raises(VideoError) as err:
        model.classify([gone], ["a", "b"])
    assert str(err.value) == _cli_error("zeroshot", gone, "--labels", "a,b", "--checkpoint", checkpoint)
    with pytest.raises(VideoError, match="video not found"):
        model.encode_video(gone)

    with pytest.raises(InputError) as err:
        model.classify(videos[:1], ["a", "a"])
    assert str(err.value) == _cli_error("zeroshot", videos[0], "--labels", "a,a", "--checkpoint", checkpoint)
    with pytest.raises(InputError, match="--views"):
        model.encode_video(videos[0], views="2")
    with pytest.raises(InputError, match="uint8"):
        model.encode_video(torch.zeros(1, 4, 3, 64, 64))
    with pytest.raises(InputError, match="64x64"):
        model.encode_video(torch.zeros(1, 4, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(InputError):
        model.encode_text([""])

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    with pytest.raises(VideoError) as err:
        model.encode_video(broken)
    assert str(broken) in str(err.value)
    with pytest.raises(VideoError):
        model.classify([broken], ["a", "b"])
    assert issubclass(VideoError, VifiError) and issubclass(CheckpointError, VifiError)


def test_a_real_recorded_video_decodes_like_the_cli(model, tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (12, 80, 96, 3), dtype=np.uint8)
    path = write_video(tmp_path / "rec.mp4", frames)
    clip = vifi.read_video(path, frames=4, size=64, backend="pyav")
    assert clip.shape == (1, 4, 3, 64, 64)
    torch.testing.assert_close(model.encode_video(clip), model.encode_video(path, backend="pyav"), atol=SAME, rtol=0)

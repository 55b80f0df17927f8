"""`vifi zeroshot` over many real files when one cannot be decoded, and with a video given twice."""

import json

import pandas as pd
import pytest

from tests.conftest import ramp_frames, write_video, vifi_in_process as _vifi
from vifi.model.checkpoint import save_weights

LABELS = "a grey ramp,a red ball"



@pytest.fixture
def folder(tmp_path, tiny_model):
    save_weights(tmp_path / "tiny.safetensors", tiny_model, {"frames": 4, "input_size": 64})
    videos = tmp_path / "videos"
    for i in range(3):
        write_video(videos / f"v{i}.mp4", ramp_frames(8 + i))
    (videos / "broken.mp4").write_bytes(b"not a video" * 30)
    return tmp_path


@pytest.mark.slow
def test_one_undecodable_file_is_named_and_the_others_are_scored_with_the_flag(folder):
    videos, ckpt = folder / "videos", folder / "tiny.safetensors"
    refused = _vifi("zeroshot", videos, "--labels", LABELS, "--checkpoint", ckpt, "--out", folder / "a.csv")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "broken.mp4" in refused.stderr and "--skip-undecodable" in refused.stderr
    assert not (folder / "a.csv").exists()

    proc = _vifi("zeroshot", videos, "--labels", LABELS, "--checkpoint", ckpt, "--out", folder / "b.csv",
                 "--skip-undecodable")
    assert proc.returncode == 0, proc.stderr
    assert f"warning: skipped: cannot decode video {(videos / 'broken.mp4').resolve()}" in proc.stderr
    table = pd.read_csv(folder / "b.csv")
    assert sorted(set(table.video)) == [str(videos / f"v{i}.mp4") for i in range(3)]
    assert len(table) == 3 * 2


@pytest.mark.slow
def test_a_video_given_twice_is_scored_once(folder):
    videos, ckpt = folder / "videos", folder / "tiny.safetensors"
    out = folder / "r.json"
    proc = _vifi("zeroshot", videos / "v1.mp4", videos / "v0.mp4", videos / "v1.mp4", "--labels", LABELS,
                 "--checkpoint", ckpt, "--out", out)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert [r["video"] for r in result] == [str(videos / "v1.mp4"), str(videos / "v0.mp4")]
    assert all(len(r["labels"]) == 2 for r in result)
    assert "1 video(s) given more than once are scored once" in proc.stderr

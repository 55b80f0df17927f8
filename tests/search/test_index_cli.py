"""`vifi index` / `vifi search` as processes on demo videos with a tiny model: incremental runs, embeddings equal to
a naive forward, odd names, undecodable and vanished videos, the lock, kill + resume, bad inputs."""

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import run_main, vifi_in_process
from vifi.data.demo import class_names
from vifi.model.backbone import TINY_CLIP, build_clip
from vifi.model.checkpoint import save_weights
from vifi.model.vifi_clip import ViFiCLIP
from vifi.search.index_folder import IndexFolder

pytestmark = pytest.mark.slow
# float32 matmuls over batches of other sizes differ in the last bits: measured up to 3.5e-6 (batch 2 vs 8)
SAME = 1e-5


def _vifi(*args, stdin=None, check=True):
    """`vifi ARGS` in this process: a new one would spend seconds importing torch and lancedb on each call. Tests of
    what only a process shows (a lock holder, a kill, a closed pipe) start their own."""
    proc = vifi_in_process(*args, stdin="" if stdin is None else stdin)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _tiny_checkpoint(path, seed=0):
    torch.manual_seed(seed)
    save_weights(path, ViFiCLIP(build_clip(TINY_CLIP), TINY_CLIP), {"frames": 4, "input_size": 64,
                                                                    "class_names": class_names()})
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return _tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture
def videos(demo_data, tmp_path):
    """A private copy of the 36 demo videos (tests add, touch and delete files)."""
    return shutil.copytree(demo_data["root"], tmp_path / "videos")


def _files(folder):
    """Every file's bytes, but the lock's (its text names whoever last took it)."""
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != ".vifi.lock"}


def _last_run(index):
    return json.loads((index / "index.json").read_text())["last_run"]


def _by_path(index):
    entries, emb, _ = IndexFolder(index).read()
    return {e.path: emb[i] for i, e in enumerate(entries)}


def test_incremental_runs_embed_only_new_and_changed_videos_and_rows_match_a_naive_forward(videos, checkpoint,
                                                                                           tmp_path):
    index = tmp_path / "idx"
    _vifi("index", videos, "--checkpoint", checkpoint, "--out", index, "--workers", "0", "--commit-every", "10")
    assert _last_run(index) == {"embedded": 36, "new": 36, "changed": 0, "unchanged": 0, "failed": 0,
                                "missing": 0, "pruned": 0, "videos": 36}
    first = _by_path(index)
    assert len(list(index.glob("rows-*.lance"))) == 1 and len(IndexFolder(index).table().list_versions()) == 1

    out = _vifi("index", videos, "--out", index, "--workers", "0")  # the index remembers its checkpoint
    assert _last_run(index)["embedded"] == 0 and _last_run(index)["unchanged"] == 36
    assert "embedded 0 of 0 new or changed (0 new, 0 changed), skipped 36 unchanged" in out.stdout

    a, b = sorted(videos.rglob("*.mp4"))[:2]
    shutil.copy(a, videos / "extra one.mp4")
    shutil.copy(b, videos / "extra two.mp4")
    _vifi("index", videos, "--out", index, "--workers", "0")
    assert _last_run(index)["embedded"] == 2 and _last_run(index)["new"] == 2 and _last_run(index)["videos"] == 38

    touched = sorted(videos.rglob("*.mp4"))[5]
    os.utime(touched, ns=(time.time_ns(), time.time_ns()))
    _vifi("index", videos, "--out", index, "--workers", "0", "--batch", "3")
    assert _last_run(index)["embedded"] == 1 and _last_run(index)["changed"] == 1

    final = _by_path(index)
    assert set(first) <= set(final)
    for path, row in first.items():  # the same video, embedded in other batches and runs: the same embedding
        np.testing.assert_allclose(final[path], row, atol=SAME)
    np.testing.assert_allclose(final[str((videos / "extra one.mp4").resolve())], first[str(a.resolve())], atol=SAME)

    from vifi.data.annotations import Entry
    from vifi.data.augment import normalise
    from vifi.data.dataset import ClipSpec, EvalClips
    from vifi.model.checkpoint import build_from_checkpoint

    model, _ = build_from_checkpoint(checkpoint)
    clip = EvalClips([Entry(str(b.resolve()), 0)], "/", ClipSpec(4, 64))[0]["frames"]  # [1 view, T, H, W, 3]
    with torch.no_grad():
        naive = F.normalize(model.head.encode_video(normalise(clip)), dim=-1)[0].numpy()
    np.testing.assert_allclose(final[str(b.resolve())], naive, atol=1e-5)
    assert np.allclose(np.linalg.norm(np.stack(list(final.values())), axis=1), 1, atol=1e-5)

    # `vifi search … | head -c 1`: the reader closes the pipe after the first table; the command ends quietly, 0
    reader = subprocess.Popen([sys.executable, "-m", "vifi", "search", *[f"query {i}" for i in range(40)],
                               "--index", str(index), "--top-k", "38"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    assert reader.stdout.read(1)
    reader.stdout.close()
    assert reader.wait(timeout=600) == 0 and reader.stderr.read() == b""


def test_odd_names_round_trip_and_scores_match_a_hand_computation(demo_data, checkpoint, tmp_path):
    src = sorted(demo_data["root"].rglob("*.mp4"))
    names = ["with space.mp4", "comma,in,name.mp4", 'quote"d\'s.mp4', "ünïcödé 视频.mp4"]
    folder = tmp_path / "odd dir, really"
    folder.mkdir()
    for name, video in zip(names, src[::9]):
        shutil.copy(video, folder / name)
    index = tmp_path / "idx"
    listing = "".join(f"{folder / n}\n" for n in names)
    _vifi("index", "-", "--checkpoint", checkpoint, "--out", index, "--workers", "0", stdin=listing)
    manifest = sorted(IndexFolder(index).keys())
    assert manifest == sorted(str((folder / n).resolve()) for n in names)

    query = "a red circle sliding across"
    proc = _vifi("search", query, "--index", index, "--top-k", "10", "--out", "-")
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert list(rows[0]) == ["rank", "score", "path", "query", "cosine"]
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4"] and {r["query"] for r in rows} == {query}
    assert sorted(r["path"] for r in rows) == sorted(manifest)

    from vifi.model.checkpoint import build_from_checkpoint

    model, _ = build_from_checkpoint(checkpoint)
    with torch.no_grad():
        texts = F.normalize(model.encode_text(model.tokenize([f"a photo of a {n}." for n in [query, *class_names()]])),
                            dim=-1).numpy()
    scale = float(model.clip.logit_scale.exp())
    emb = _by_path(index)
    cos = {p: float(emb[p] @ texts[0]) for p in manifest}
    # the score corrects each video's cosine by its log-sum-exp over the checkpoint's class texts (its "bank")
    naive = {p: scale * cos[p] - float(np.log(np.exp(scale * texts[1:] @ emb[p]).sum())) for p in manifest}
    assert [r["path"] for r in rows] == sorted(manifest, key=naive.get, reverse=True)
    assert [float(r["score"]) for r in rows] == pytest.approx([naive[r["path"]] for r in rows], abs=1e-4)
    assert [float(r["cosine"]) for r in rows] == pytest.approx([cos[r["path"]] for r in rows], abs=1e-5)
    entries, vectors, offsets = IndexFolder(index).read()  # the offset stored at index time = the on-the-fly one
    on_the_fly = np.log(np.exp(scale * vectors @ texts[1:].T).sum(axis=1))
    np.testing.assert_allclose(offsets, on_the_fly, rtol=1e-5)
    plain = list(csv.DictReader(io.StringIO(_vifi("search", query, "--index", index, "--cosine", "--out", "-").stdout)))
    assert [r["path"] for r in plain] == sorted(manifest, key=cos.get, reverse=True)
    assert [float(r["score"]) for r in plain] == pytest.approx([cos[r["path"]] for r in plain], abs=1e-5)

    as_json = json.loads(_vifi("search", query, "other words", "--index", index, "--top-k", "2", "--json").stdout)
    assert [q["query"] for q in as_json] == [query, "other words"] and len(as_json[0]["results"]) == 2
    assert as_json[0]["results"][0]["path"] == rows[0]["path"]
    from_stdin = json.loads(_vifi("search", "-", "--index", index, "--top-k", "2", "--json",
                                  stdin=f"{query}\n\nother words\n").stdout)  # one query a line, as `index -` reads
    assert from_stdin == as_json


def test_undecodable_videos_are_listed_and_retried_and_vanished_ones_left_out_or_pruned(videos, checkpoint, tmp_path):
    index = tmp_path / "idx"
    (videos / "broken.mp4").write_bytes(b"not a video" * 50)
    proc = _vifi("index", videos, "--checkpoint", checkpoint, "--out", index, "--workers", "0")
    assert "warning: skipped:" in proc.stderr and "broken.mp4" in proc.stderr
    assert (index / "failed.txt").read_text().startswith(str((videos / "broken.mp4").resolve()) + "\t")
    assert _last_run(index)["failed"] == 1 and _last_run(index)["videos"] == 36
    again = _vifi("index", videos, "--out", index, "--workers", "0")
    assert _last_run(index)["failed"] == 1 and _last_run(index)["embedded"] == 0  # tried again, still broken
    assert "embedded 0 of 1 new or changed (1 new, 0 changed), skipped 36 unchanged, 1 failed" in again.stdout
    (videos / "broken.mp4").unlink()
    _vifi("index", videos, "--out", index, "--workers", "0")
    assert not (index / "failed.txt").exists()

    query = "a blue square spinning"
    top = [r["path"] for r in csv.DictReader(io.StringIO(_vifi("search", query, "--index", index, "--top-k", "3",
                                                               "--out", "-").stdout))]
    os.remove(top[0])
    proc = _vifi("search", query, "--index", index, "--top-k", "3", "--out", "-")
    after = [r["path"] for r in csv.DictReader(io.StringIO(proc.stdout))]
    assert after[:2] == top[1:] and len(after) == 3 and "1 indexed video(s) no longer on disk" in proc.stderr
    _vifi("index", videos, "--out", index, "--workers", "0", "--prune")
    assert _last_run(index)["pruned"] == 1 and top[0] not in _by_path(index)

    good, garbage = _files(index), tmp_path / "garbage"  # --overwrite on inputs that all fail keeps the index
    garbage.mkdir()
    for i in range(2):
        (garbage / f"bad{i}.mp4").write_bytes(b"not a video" * 50)
    proc = _vifi("index", garbage, "--out", index, "--overwrite", "--workers", "0", check=False)
    assert proc.returncode == 2 and "none of the 2 videos could be decoded" in proc.stderr, proc.stderr
    assert _files(index) == good


def _linked_videos(demo_data, folder, n):
    """`n` hard links to the demo videos: many files to embed, no extra disk."""
    folder.mkdir()
    src = sorted(demo_data["root"].rglob("*.mp4"))
    for i in range(n):
        os.link(src[i % len(src)], folder / f"v{i:03d}.mp4")
    return folder


def _committed(index):
    try:
        return len(IndexFolder(index).keys())
    except Exception:  # noqa: BLE001 - not created yet, or a version being written
        return 0


def _wait_for_commits(proc, index, lines):
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if _committed(index) >= lines:
            return
        time.sleep(0.01)
    raise AssertionError(f"no {lines} committed videos while the run was alive (exit {proc.poll()})")


def test_a_second_index_run_is_refused_naming_the_holder_which_then_completes(demo_data, checkpoint, tmp_path):
    videos = _linked_videos(demo_data, tmp_path / "videos", 60)
    index = tmp_path / "idx"
    first = subprocess.Popen([sys.executable, "-m", "vifi", "index", str(videos), "--checkpoint", str(checkpoint),
                              "--out", str(index), "--workers", "0", "--batch", "1", "--commit-every", "4"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_commits(first, index, 4)
        os.kill(first.pid, signal.SIGSTOP)  # holds the lock, mid-run, until the second run has been answered
        before = _files(index)
        second = _vifi("index", videos, "--out", index, check=False)
        after = _files(index)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert second.returncode == 2 and len(second.stderr.splitlines()) == 1, second.stderr
    assert "in use by another run" in second.stderr and f"pid {first.pid} " in second.stderr
    assert before == after
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert _last_run(index)["embedded"] == 60 and _last_run(index)["videos"] == 60


def test_kill_of_the_process_group_mid_run_keeps_the_committed_work_and_a_rerun_continues(demo_data, checkpoint,
                                                                                         tmp_path):
    videos = _linked_videos(demo_data, tmp_path / "videos", 120)  # enough work that the kill lands mid-run
    index = tmp_path / "idx"
    args = [sys.executable, "-m", "vifi", "index", str(videos), "--checkpoint", str(checkpoint), "--out",
            str(index), "--workers", "1", "--batch", "2", "--commit-every", "4"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _wait_for_commits(proc, index, 12)
    os.killpg(proc.pid, signal.SIGKILL)  # the main process and its loader worker, at whatever they were doing
    proc.wait()
    kept, emb, _ = IndexFolder(index).read()  # consistent: every committed row is whole
    assert 12 <= len(kept) < 120 and len(kept) % 4 == 0 and emb.shape == (len(kept), 64)

    out = _vifi("index", videos, "--out", index, "--workers", "0")
    assert _last_run(index)["embedded"] == 120 - len(kept) and _last_run(index)["unchanged"] == len(kept), out.stderr
    resumed = _by_path(index)
    clean = tmp_path / "clean"
    _vifi("index", videos, "--checkpoint", checkpoint, "--out", clean, "--workers", "0")
    uninterrupted = _by_path(clean)
    assert resumed.keys() == uninterrupted.keys()
    for path, row in uninterrupted.items():
        np.testing.assert_allclose(resumed[path], row, atol=SAME)
    assert len(list(index.glob("rows-*.lance"))) == 1 and not list(index.glob(".*.tmp"))
    assert len(IndexFolder(index).table().list_versions()) == 1  # the killed run's versions cleaned up


def _in_process(*args):
    """`vifi ARGS` in this process (no seconds of imports per call), which must succeed."""
    code, _, err = run_main(args, stdin="")
    assert code == 0, err


def test_bad_inputs_are_one_line_exit_2_before_any_change(videos, checkpoint, tmp_path):
    index = tmp_path / "idx"
    one = sorted(videos.rglob("*.mp4"))[0]
    own = shutil.copy(checkpoint, tmp_path / "own.safetensors")  # this test moves and replaces it
    _in_process("index", one, "--checkpoint", own, "--out", index, "--workers", "0")
    snapshot = _files(index)
    other = _tiny_checkpoint(tmp_path / "other.safetensors", seed=1)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "mine.txt").write_text("keep")
    cases = [
        (["search", "x", "--index", tmp_path / "nowhere"], "index not found"),
        (["search", "x", "--index", index, "--top-k", "0"], "--top-k 0"),
        (["search", "x", "--index", index, "--checkpoint", other], "is not the one index"),
        (["search", "   ", "--index", index], "a query is empty"),
        (["search", "spin " * 80, "--index", index], "query longer than 77 tokens"),  # a query, not a class prompt
        (["index", videos, "--checkpoint", other, "--out", index], "is not the one index"),
        (["index", videos, "--out", index, "--frames", "6"], "with --frames 4, not --frames 6"),
        (["index", videos, "--out", index, "--views", "2x3"], "with --views 1x1, not --views 2x3"),
        (["index", videos, "--out", notes, "--checkpoint", checkpoint], "not part of a vifi index"),
        (["index", videos, "--out", tmp_path / "new", "--checkpoint", tmp_path / "nope.safetensors"],
         "checkpoint not found"),
        (["index", videos, "--out", tmp_path / "new2"], "give --checkpoint"),
        (["index", tmp_path / "missing.mp4", "--out", index], "video not found"),
        (["index", videos, "--out", index, "--commit-every", "0"], "--commit-every 0"),
        (["index", videos, "--out", index, "--window", "0"], "--window 0"),
        (["index", videos, "--out", index, "--window", "2", "--stride", "3"], "longer than --window"),
        (["index", videos, "--out", index, "--window", "2"], "indexed without --window"),
        (["search", "x", "--index", index, "--no-merge"], "holds whole videos"),
        (["search", "-", "--index", index], "stdin held none"),
        (["zeroshot", one, "--checkpoint", own, "--labels", "a,b", "--window", "-1"], "--window -1"),
        (["zeroshot", one, "--checkpoint", own, "--labels", "a,b", "--window", "1", "--views", "2x1"],
         "a window is one clip"),
    ]
    for args, needle in cases:
        code, _, err = run_main(args, stdin="")
        assert code == 2 and needle in err and len(err.splitlines()) == 1, (args, err)
    assert snapshot == _files(index)
    assert not (tmp_path / "new").exists() and not (tmp_path / "new2").exists()
    assert [p.name for p in notes.iterdir()] == ["mine.txt"]

    shutil.move(own, tmp_path / "moved.safetensors")
    code, _, err = run_main(["search", "x", "--index", index])
    assert code == 2 and "not there any more" in err and len(err.splitlines()) == 1, err
    _in_process("search", "x", "--index", index, "--checkpoint", tmp_path / "moved.safetensors")
    _tiny_checkpoint(own, seed=2)  # a different model at the recorded place
    code, _, err = run_main(["search", "x", "--index", index])
    assert code == 2 and "is not the one index" in err, err
    _in_process("index", videos, "--out", index, "--overwrite", "--workers", "0")  # rebuilt with the model now there
    assert _last_run(index)["embedded"] == 36 and _last_run(index)["videos"] == 36
    assert len(list(index.glob("rows-*.lance"))) == 1  # the old table went at the swap

    old = tmp_path / "old-format"  # an index of the previous format: refused, or rebuilt by --overwrite
    old.mkdir()
    (old / "index.json").write_text(json.dumps({"format": "vifi-index/1", "checkpoint": str(own)}))
    (old / "manifest.jsonl").write_text("")
    for args in (["search", "x", "--index", old], ["index", one, "--out", old]):
        code, _, err = run_main(args)
        assert code == 2 and "older vifi" in err and "--overwrite" in err, err
    _in_process("index", one, "--out", old, "--overwrite", "--workers", "0")
    assert sorted(p.name for p in old.iterdir() if not p.name.startswith(".")) == ["index.json",
                                                                                  *[p.name for p in old.glob("rows-*")]]

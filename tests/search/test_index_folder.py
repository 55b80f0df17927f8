"""The index folder on its own (no model): commits, compaction, garbage, odd paths, what a kill leaves."""

import json

import numpy as np
import pytest

from vifi.search.build import Video, plan
from vifi.search.index_folder import IndexEntry, IndexFolder

ODD = ["/v/with space.mp4", "/v/comma,in,name.mp4", '/v/quote"d\'.mp4', "/v/ünïcödé 视频.mp4", "/v/tab\there.mp4"]


def _rows(n, d=4, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_commits_then_compaction_keep_every_path_and_row(tmp_path):
    folder = IndexFolder(tmp_path / "idx")
    first, second = _rows(3), _rows(2, seed=1)
    entries = folder.commit([], [(p, 10 + i, 100 + i) for i, p in enumerate(ODD[:3])], first)
    entries = folder.commit(entries, [(p, 20 + i, 200 + i) for i, p in enumerate(ODD[3:])], second)
    assert len(list(folder.parts.iterdir())) == 2
    read, emb = IndexFolder(folder.path).read()
    assert [e.path for e in read] == ODD and read == entries  # odd names round-trip through the manifest
    np.testing.assert_array_equal(emb, np.concatenate([first, second]))

    compacted = folder.compact(read)
    assert [p.name for p in folder.parts.iterdir()] == [compacted[0].part]
    assert [e.row for e in compacted] == list(range(5)) and [e.path for e in compacted] == ODD
    np.testing.assert_array_equal(folder.read()[1], np.concatenate([first, second]))
    lines = folder.manifest.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[3])["path"] == "/v/ünïcödé 视频.mp4" and len(lines) == 5


def test_a_replaced_entry_keeps_its_place_and_its_old_row_becomes_garbage(tmp_path):
    folder = IndexFolder(tmp_path / "idx")
    entries = folder.commit([], [("/a.mp4", 1, 1), ("/b.mp4", 1, 1)], _rows(2))
    newer = _rows(1, seed=5)
    entries = folder.commit(entries, [("/a.mp4", 2, 2)], newer)
    assert [(e.path, e.size) for e in entries] == [("/a.mp4", 2), ("/b.mp4", 1)]
    np.testing.assert_array_equal(folder.read()[1][0], newer[0])
    folder.compact(entries)
    assert len(list(folder.parts.iterdir())) == 1
    np.testing.assert_array_equal(folder.read()[1], np.stack([newer[0], _rows(2)[1]]))


def test_a_commit_killed_before_the_manifest_leaves_the_previous_content(tmp_path, monkeypatch):
    folder = IndexFolder(tmp_path / "idx")
    entries = folder.commit([], [("/a.mp4", 1, 1)], _rows(1))
    before = folder.manifest.read_bytes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as if the process died right after the part file was renamed into place

    monkeypatch.setattr("vifi.search.index_folder.write_text_atomic", killed)
    with pytest.raises(KeyboardInterrupt):
        folder.commit(entries, [("/b.mp4", 1, 1)], _rows(1, seed=3))
    monkeypatch.undo()
    assert folder.manifest.read_bytes() == before and len(list(folder.parts.iterdir())) == 2
    read, emb = folder.read()
    assert [e.path for e in read] == ["/a.mp4"] and emb.shape == (1, 4)
    (folder.parts / ".part-000009.npy.abc.tmp").write_bytes(b"half")  # what a kill inside a write leaves
    folder.collect_garbage(read)
    assert sorted(p.name for p in folder.parts.iterdir()) == [read[0].part]


def test_plan_sorts_videos_into_new_changed_unchanged_and_missing(tmp_path):
    on_disk = tmp_path / "here.mp4"
    on_disk.write_bytes(b"x")
    gone = str(tmp_path / "gone.mp4")
    entries = [IndexEntry(str(on_disk), 1, 5, "part-000000.npy", 0), IndexEntry(gone, 1, 5, "part-000000.npy", 1),
               IndexEntry("/other.mp4", 1, 5, "part-000000.npy", 2)]
    videos = [Video(str(on_disk), 1, 5), Video("/other.mp4", 1, 6), Video("/new.mp4", 3, 3)]
    kept = plan(entries, videos, prune=False)
    assert kept.unchanged == 1 and kept.changed == [videos[1]] and kept.new == [videos[2]]
    assert kept.missing == [gone, "/other.mp4"] and kept.keep == entries
    pruned = plan(entries, videos, prune=True)
    assert pruned.pruned == 2 and pruned.keep == entries[:1] and not pruned.missing


def test_foreign_files_are_what_an_index_does_not_hold(tmp_path):
    folder = IndexFolder(tmp_path)
    folder.commit([], [("/a.mp4", 1, 1)], _rows(1))
    (tmp_path / ".manifest.jsonl.x.tmp").write_text("")
    (tmp_path / ".vifi.lock").write_text("")
    assert folder.foreign_files() == []
    (tmp_path / "notes.txt").write_text("mine")
    assert folder.foreign_files() == ["notes.txt"]

"""The index store on its own (no model): appends, replacement by path, deletion, odd paths, the folded offset, what
a kill between a delete and an append leaves, approximate search against exact, old-format refusal, the planner."""

import json

import numpy as np
import pytest

from vifi.errors import VifiError
from vifi.search import index_folder
from vifi.search.build import Video, plan
from vifi.search.index_folder import IndexEntry, IndexFolder

ODD = ["/v/with space.mp4", "/v/comma,in,name.mp4", '/v/quote"d\'.mp4', "/v/ünïcödé 视频.mp4", "/v/tab\there.mp4"]
SCALE = 50.0


def _rows(n, d=4, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _store(tmp_path):
    folder = IndexFolder(tmp_path / "idx")
    info = {"table": IndexFolder.new_table_name()}
    folder.write_info(info)
    return folder, info


def _commit(folder, info, paths, vectors, offsets=None, replace=frozenset(), size=1):
    offsets = np.zeros(len(paths), np.float32) if offsets is None else offsets
    folder.commit(info, [IndexEntry(p, size, 7) for p in paths], vectors, offsets, SCALE, replace=set(replace))


def test_appends_keep_every_odd_path_row_and_offset(tmp_path):
    folder, info = _store(tmp_path)
    first, second = _rows(3), _rows(2, seed=1)
    _commit(folder, info, ODD[:3], first, np.array([1, 2, 3], np.float32))
    _commit(folder, info, ODD[3:], second, np.array([4, 5], np.float32))
    entries, vectors, offsets = IndexFolder(folder.path).read()  # a fresh reader: what is on disk
    assert [e.path for e in entries] == ODD  # odd names round-trip
    np.testing.assert_allclose(vectors, np.concatenate([first, second]), atol=1e-7)
    np.testing.assert_array_equal(offsets, [1, 2, 3, 4, 5])
    assert IndexFolder(folder.path).keys() == {p: (1, 7) for p in ODD}


def test_the_stored_vector_folds_the_offset_into_an_inner_product(tmp_path):
    folder, info = _store(tmp_path)
    vectors, offsets = _rows(40, d=8, seed=2), np.random.default_rng(3).normal(5, 1, 40).astype(np.float32)
    paths = [f"/v/{i}.mp4" for i in range(40)]
    _commit(folder, info, paths, vectors, offsets)
    q = _rows(1, d=8, seed=4)[0]
    corrected = SCALE * (vectors @ q) - offsets  # the bank-corrected score, as search defines it
    result = folder.search(np.append(q, 1.0), 5)
    assert result["path"].to_pylist() == [paths[i] for i in np.argsort(-corrected)[:5]]
    np.testing.assert_allclose(SCALE * result["dot"].to_numpy(), np.sort(corrected)[::-1][:5], atol=1e-4)
    plain = folder.search(np.append(q, 0.0), 5)  # [q, 0]: the plain cosine
    assert plain["path"].to_pylist() == [paths[i] for i in np.argsort(-(vectors @ q))[:5]]


def test_replace_and_delete_by_path_remove_all_rows_of_a_video(tmp_path):
    folder, info = _store(tmp_path)
    folder.commit(info, [IndexEntry("/a.mp4", 1, 1, 0.0, 2.0), IndexEntry("/a.mp4", 1, 1, 2.0, 4.0),
                         IndexEntry("/b.mp4", 1, 1, 0.0, 2.0)], _rows(3), np.zeros(3, np.float32), SCALE)
    newer = _rows(1, seed=5)
    folder.commit(info, [IndexEntry("/a.mp4", 2, 2, 0.0, 3.0)], newer, np.zeros(1, np.float32), SCALE,
                  replace={"/a.mp4"})
    entries, vectors, _ = folder.read()
    assert sorted((e.path, e.size, e.start) for e in entries) == [("/a.mp4", 2, 0.0), ("/b.mp4", 1, 0.0)]
    np.testing.assert_allclose(vectors[[e.path for e in entries].index("/a.mp4")], newer[0], atol=1e-7)
    folder.delete(["/b.mp4", "/never'indexed.mp4"])
    assert list(folder.keys()) == ["/a.mp4"]


def test_a_commit_killed_between_its_delete_and_its_append_leaves_the_video_to_embed_again(tmp_path, monkeypatch):
    folder, info = _store(tmp_path)
    _commit(folder, info, ["/a.mp4", "/b.mp4"], _rows(2))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as if the process died right after the delete's version was written

    table = folder.table()
    monkeypatch.setattr(type(table), "add", killed)
    with pytest.raises(KeyboardInterrupt):
        _commit(folder, info, ["/a.mp4"], _rows(1, seed=3), replace={"/a.mp4"}, size=2)
    monkeypatch.undo()
    keys = IndexFolder(folder.path).keys()
    assert keys == {"/b.mp4": (1, 7)}  # consistent: the old row gone, no half-written new one
    assert plan(keys, [Video("/a.mp4", 2, 7), Video("/b.mp4", 1, 7)], prune=False).new == [Video("/a.mp4", 2, 7)]


def test_approximate_search_finds_what_exact_search_finds(tmp_path, monkeypatch):
    monkeypatch.setattr(index_folder, "ANN_MIN_ROWS", 1000)
    folder, info = _store(tmp_path)
    rng = np.random.default_rng(0)
    centres = _rows(40, d=16, seed=9)
    x = centres[rng.integers(0, 40, 3000)] + 0.1 * rng.standard_normal((3000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    paths = [f"/v/{i:05d}.mp4" for i in range(3000)]
    for start in range(0, 3000, 1000):
        _commit(folder, info, paths[start:start + 1000], x[start:start + 1000])
    assert folder.optimize().startswith("built an approximate-search index over 3000 rows")
    assert any(i.columns == ["vector"] for i in folder.table().list_indices())
    recalls = []
    for q in x[rng.integers(0, 3000, 20)]:
        q = np.append(q, 1.0)
        exact = set(folder.search(q, 10, exact=True)["path"].to_pylist())
        assert exact == {paths[i] for i in np.argsort(-(x @ q[:-1]))[:10]}
        recalls.append(len(exact & set(folder.search(q, 10)["path"].to_pylist())) / 10)
    assert np.mean(recalls) >= 0.95, recalls


def test_an_index_of_the_older_format_is_refused_in_one_line_saying_how_to_rebuild(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    (old / "index.json").write_text(json.dumps({"format": "vifi-index/1", "checkpoint": "/c.safetensors"}))
    (old / "manifest.jsonl").write_text("")
    with pytest.raises(VifiError, match="older vifi .*--overwrite"):
        IndexFolder(old).read_info()
    (old / "index.json").write_text(json.dumps({"format": "vifi-index/9"}))
    with pytest.raises(VifiError, match="not a vifi-index/2 index"):
        IndexFolder(old).read_info()
    assert IndexFolder(old).foreign_files() == []  # an old index is ours: --overwrite may replace it


def test_plan_sorts_videos_into_new_changed_unchanged_and_missing(tmp_path):
    on_disk = tmp_path / "here.mp4"
    on_disk.write_bytes(b"x")
    gone = str(tmp_path / "gone.mp4")
    keys = {str(on_disk): (1, 5), gone: (1, 5), "/other.mp4": (1, 5)}
    videos = [Video(str(on_disk), 1, 5), Video("/other.mp4", 1, 6), Video("/new.mp4", 3, 3)]
    kept = plan(keys, videos, prune=False)
    assert kept.unchanged == 1 and kept.changed == [videos[1]] and kept.new == [videos[2]]
    assert kept.missing == [gone, "/other.mp4"] and not kept.pruned
    pruned = plan(keys, videos, prune=True)
    assert pruned.pruned == [gone, "/other.mp4"] and not pruned.missing


def test_foreign_files_are_what_an_index_does_not_hold(tmp_path):
    folder = IndexFolder(tmp_path)
    info = {"table": IndexFolder.new_table_name()}
    folder.write_info(info)
    _commit(folder, info, ["/a.mp4"], _rows(1))
    (tmp_path / ".index.json.x.tmp").write_text("")
    (tmp_path / ".vifi.lock").write_text("")
    assert folder.foreign_files() == []
    (tmp_path / "notes.txt").write_text("mine")
    assert folder.foreign_files() == ["notes.txt"]


def test_optimize_removes_what_a_killed_append_wrote_and_no_version_names(tmp_path):
    import shutil

    folder, info = _store(tmp_path)
    _commit(folder, info, ["/a.mp4"], _rows(1))
    data = folder.path / f"{info['table']}.lance" / "data"
    (written,) = list(data.iterdir())
    stray = data / ("0" * 8 + written.name[8:])  # a data file whose manifest never came (kill mid-append)
    shutil.copy(written, stray)
    _commit(folder, info, ["/b.mp4"], _rows(1, seed=1))
    folder.optimize()
    assert not stray.exists() and sorted(folder.keys()) == ["/a.mp4", "/b.mp4"]
    assert len(folder.table().list_versions()) == 1

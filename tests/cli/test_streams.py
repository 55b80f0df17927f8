"""Outputs to streams: `--out -` is stdout (the CSV only); a FIFO, /dev/stdout or any non-regular output path is
written through, never replaced by the atomic rename."""

import csv
import io
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from vifi.fileio import is_stream, write_text_atomic


def _vifi(*args, **kw):
    return subprocess.run([sys.executable, "-m", "vifi", *map(str, args)], capture_output=True, text=True,
                          timeout=300, **kw)


def _read_fifo_in_background(path: Path) -> dict:
    got = {}

    def read():
        with open(path, "rb") as fh:
            got["bytes"] = fh.read()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    got["thread"] = thread
    return got


def test_fifo_is_written_through_and_stays_a_fifo(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert is_stream(fifo) and not is_stream(tmp_path / "regular.csv")
    got = _read_fifo_in_background(fifo)
    write_text_atomic(fifo, "a,b\n1,2\n")
    got["thread"].join(timeout=10)
    assert got["bytes"] == b"a,b\n1,2\n"
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # not replaced by a regular file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]  # no temp file left beside it


def test_dev_stdout_is_written_through_not_replaced():
    code = "from vifi.fileio import write_text_atomic; write_text_atomic('/dev/stdout', 'x,y\\n')"
    before = os.lstat("/dev/stdout")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "x,y\n"
    after = os.lstat("/dev/stdout")
    assert (before.st_mode, before.st_ino) == (after.st_mode, after.st_ino)  # still the same link, not a file


@pytest.fixture
def checkpoint(tmp_path, tiny_model):
    from vifi.model.checkpoint import save_weights

    path = tmp_path / "m.safetensors"
    save_weights(path, tiny_model, {"frames": 4, "input_size": 64})
    return path


def _videos(demo_data, n=2):
    root = Path(demo_data["root"])
    return [root / line.split()[0] for line in Path(demo_data["val_list"]).read_text().splitlines()[:n]]


def test_zeroshot_out_dash_writes_only_the_csv_to_stdout(demo_data, checkpoint):
    videos = _videos(demo_data)
    proc = _vifi("zeroshot", *videos, "--labels", "red,green,blue", "--checkpoint", checkpoint, "--out", "-",
                 "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["video"] for r in rows] == [str(v) for v in videos for _ in range(3)]
    assert all(abs(sum(float(r["prob"]) for r in rows[i:i + 3]) - 1) < 1e-4 for i in (0, 3))
    assert not Path("-").exists()


def test_zeroshot_into_a_fifo_read_by_another_process(demo_data, checkpoint, tmp_path):
    fifo = tmp_path / "scores.fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE, text=True)
    proc = _vifi("zeroshot", *_videos(demo_data), "--labels", "red,green", "--checkpoint", checkpoint,
                 "--out", fifo, "--device", "cpu")
    piped, _ = reader.communicate(timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert piped.splitlines()[0] == "video,label,prob" and len(piped.splitlines()) == 1 + 2 * 2
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)

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


# ---- descriptors connected to regular files, and existing files (issue 23, item 10) ------------------------------

WRITE = "import sys; from vifi.fileio import write_text_atomic; write_text_atomic(sys.argv[1], 'x,y\\n')"


def test_a_link_to_proc_self_fd_1_writes_through_to_a_regular_file_behind_it(tmp_path):
    log, link = tmp_path / "job.log", tmp_path / "out.csv"
    log.write_text("earlier line\n")
    link.symlink_to("/proc/self/fd/1")
    with open(log, "ab") as stdout:  # `>> job.log`, as cron or Slurm --output give it
        proc = subprocess.run([sys.executable, "-c", WRITE, str(link)], stdout=stdout, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1"  # not renamed over
    assert log.read_text() == "earlier line\nx,y\n"  # through the descriptor, at its offset: nothing truncated
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.log", "out.csv"]


def test_dev_stdout_connected_to_a_regular_file_is_written_through(tmp_path):
    log = tmp_path / "job.log"
    before = os.lstat("/dev/stdout")
    with open(log, "wb") as stdout:  # `> job.log`
        stdout.write(b"first\n")
        stdout.flush()
        proc = subprocess.run([sys.executable, "-c", "print('said', flush=True); " + WRITE,
                               "/dev/stdout"], stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text() == "first\nsaid\nx,y\n"
    after = os.lstat("/dev/stdout")
    assert (before.st_mode, before.st_ino) == (after.st_mode, after.st_ino)


def test_paths_naming_descriptors_are_streams_and_stdout_is_recognised(tmp_path):
    from vifi.fileio import descriptor_of, is_stdout

    link = tmp_path / "l"
    link.symlink_to("/dev/fd/2")
    assert descriptor_of("/dev/stdout") == (None, 1) and descriptor_of(f"/proc/{os.getpid()}/fd/7") == (None, 7)
    assert descriptor_of(link) == (None, 2) and is_stream(link) and not is_stdout(link)
    assert is_stdout("-") and is_stdout("/proc/self/fd/1") and not is_stdout(tmp_path / "file.csv")
    assert descriptor_of(tmp_path / "file.csv") is None


def test_zeroshot_to_dev_stdout_in_a_log_file_gets_the_csv_only_and_the_table_on_stderr(demo_data, checkpoint,
                                                                                         tmp_path):
    log = tmp_path / "job.log"
    with open(log, "wb") as stdout:
        proc = subprocess.run([sys.executable, "-m", "vifi", "zeroshot", *map(str, _videos(demo_data)), "--labels",
                               "red,green", "--checkpoint", str(checkpoint), "--out", "/dev/stdout", "--device",
                               "cpu"], stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = log.read_text().splitlines()
    assert lines[0] == "video,label,prob" and len(lines) == 1 + 2 * 2  # the table went to stderr
    assert "red" in proc.stderr


def test_search_and_zeroshot_refuse_to_replace_an_existing_file_without_overwrite(demo_data, checkpoint, tmp_path):
    mine = tmp_path / "scores.csv"
    mine.write_text("precious\n")
    for args in (["search", "juggling", "--index", tmp_path / "no-index"],
                 ["zeroshot", *_videos(demo_data), "--labels", "red,green", "--checkpoint", checkpoint]):
        proc = _vifi(*args, "--out", mine, "--device", "cpu")
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [f"error: --out {mine} exists; pass --overwrite to replace it, "
                                                    "or choose another --out"]
        assert mine.read_text() == "precious\n"
    proc = _vifi("zeroshot", *_videos(demo_data), "--labels", "red,green", "--checkpoint", checkpoint, "--out", mine,
                 "--device", "cpu", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert mine.read_text().startswith("video,label,prob\n")

"""The demo generator writes byte-identical videos on a loaded CPU (so `--deterministic` demo runs match)."""

import hashlib
import subprocess
import sys


def _digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_generating_the_demo_three_times_under_cpu_load_gives_identical_bytes(tmp_path):
    from vifi.data.demo import generate_demo

    # Two busy processes keep both cores loaded: CRF rate control gave different bytes under such load
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        digests = []
        for k in range(3):
            generate_demo(tmp_path / f"demo{k}", train_per_class=2, test_per_class=1)
            digests.append(_digest(tmp_path / f"demo{k}"))
    finally:
        for proc in burners:
            proc.kill()
            proc.wait()
    assert len(digests[0]) == 6 * 3 + 3  # 18 videos, two lists, labels.csv
    assert digests[0] == digests[1] == digests[2]

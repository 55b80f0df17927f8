"""A process whose DataLoader was not read to its end still exits: its workers ignore SIGTERM (so that a group
signal reaches only the main process), which multiprocessing's own exit would otherwise wait on forever."""

import subprocess
import sys

SCRIPT = """
import torch
from vifi.engine.loaders import make_loader
loader = make_loader(list(range(1000)), batch_size=2, workers=2, device=torch.device("cpu"),
                     collate_fn=lambda items: items)
LEFT_OPEN = iter(loader)   # a module global: still alive when the interpreter's exit hooks run
print(next(LEFT_OPEN))
"""


def test_process_with_an_unfinished_loader_exits():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[0, 1]"

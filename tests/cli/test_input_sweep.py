"""Ordinary wrong input to every subcommand: one `error:` line, exit 2, no traceback, nothing created or changed.

Table-driven, like tests/cli/test_input_checks.py does for finetune. The CLI runs in this process (`app.main()`,
stdout/stderr captured, signal handlers restored): an exception that escapes main() fails the test with its
traceback, which is the bug being tested for.
"""

from pathlib import Path

import pytest

from tests.conftest import run_main
from vifi.model.backbone import TINY_CLIP, build_clip
from vifi.model.checkpoint import save_weights
from vifi.model.vifi_clip import ViFiCLIP


@pytest.fixture(scope="module")
def place(tmp_path_factory, demo_data):
    """A folder with what the cases point at: a tiny checkpoint, a file that is not one, the demo lists, a run-like
    folder with files that are not what `viz` reads, a video."""
    root = tmp_path_factory.mktemp("sweep")
    save_weights(root / "m.safetensors", ViFiCLIP(build_clip(TINY_CLIP), TINY_CLIP), {"frames": 8, "input_size": 64})
    (root / "notckpt.pt").write_text("hello, I am a text file\n")
    (root / "notes.txt").write_text("not a folder\n")
    run = root / "run"
    run.mkdir()
    (run / "summary.csv").write_text("epoch,step,top1,top5\n0,2,50.0,90.0\n")
    (run / "per_class.csv").write_text("class_id,class_name,videos,correct,top1\n0,a,2,1,50.0\n1,b,2,2,100.0\n")
    (run / "confusion.csv").write_text("")
    (run / "log.csv").write_text("step,lr\n1,0.1\n")
    empty_index = root / "not_an_index"
    empty_index.mkdir()
    (empty_index / "x.txt").write_text("x")
    video = next(Path(demo_data["root"]).rglob("*.mp4"))
    return {"root": root, "demo": demo_data, "video": video}


def _cases(d, video):
    lists = ["--data", d["val_list"], "--labels", d["labels"], "--root", d["root"]]
    ev = ["eval", "--checkpoint", "m.safetensors", *lists, "--out", "o"]
    zs = ["zeroshot", video, "--labels", "a,b", "--checkpoint", "m.safetensors"]
    tsne = ["viz", "tsne", *lists, "--checkpoint", "m.safetensors", "--out", "o"]
    return {
        "prepare: unknown dataset": ["prepare", "bogus", "--root", ".", "--out", "o"],
        "prepare: root missing": ["prepare", "ucf101", "--root", "nowhere", "--out", "o"],
        "prepare: root is a file": ["prepare", "generic", "--root", "notes.txt", "--out", "o"],
        "prepare: workers -1": ["prepare", "generic", "--root", d["root"], "--out", "o", "--workers", "-1"],
        "prepare: min-frames 0": ["prepare", "generic", "--root", d["root"], "--out", "o", "--min-frames", "0"],
        "prepare: short-side 0": ["prepare", "generic", "--root", d["root"], "--out", "o", "--reencode", "re",
                                  "--short-side", "0"],
        "finetune: micro-batch": ["finetune", "demo", "--set", "train.micro_batch=5", "--out", "o"],
        "prompt: bridge at another input size": ["prompt", "prompt-b2n-ucf101", "--bridge", "m.safetensors",
                                                 *lists, "--val", d["val_list"], "--out", "o"],
        "finetune: init-from at another input size": ["finetune", "demo", "--set", "model.init_from=m.safetensors",
                                                      "--set", "data.input_size=96", "--out", "o"],
        "prompt: bridge missing": ["prompt", "prompt-b2n-ucf101", "--bridge", "gone.safetensors", *lists,
                                   "--out", "o"],
        "eval: not a checkpoint": ["eval", "--checkpoint", "notckpt.pt", *lists, "--out", "o"],
        "eval: list missing": ["eval", "--checkpoint", "m.safetensors", "--data", "gone.txt", *lists[2:],
                               "--out", "o"],
        "eval: views 0x1": [*ev, "--views", "0x1"],
        "eval: views abc": [*ev, "--views", "abc"],
        "eval: frames 0": [*ev, "--frames", "0"],
        "eval: batch 0": [*ev, "--batch", "0"],
        "eval: device tpu": [*ev, "--device", "tpu"],
        "eval: limit 0": [*ev, "--limit", "0"],
        "eval: wise-ft 2": [*ev, "--wise-ft", "2"],
        "zeroshot: top-k 0": [*zs, "--top-k", "0"],
        "zeroshot: frames -1": [*zs, "--frames", "-1"],
        "zeroshot: views 1x2": [*zs, "--views", "1x2"],
        "zeroshot: not a checkpoint": ["zeroshot", video, "--labels", "a,b", "--checkpoint", "notckpt.pt"],
        "zeroshot: video missing": ["zeroshot", "gone.mp4", "--labels", "a,b", "--checkpoint", "m.safetensors"],
        "zeroshot: empty labels": ["zeroshot", video, "--labels", ",", "--checkpoint", "m.safetensors"],
        "index: views 0x0": ["index", video, "--out", "o", "--checkpoint", "m.safetensors", "--views", "0x0"],
        "index: commit-every 0": ["index", video, "--out", "o", "--checkpoint", "m.safetensors",
                                  "--commit-every", "0"],
        "index: batch 0": ["index", video, "--out", "o", "--checkpoint", "m.safetensors", "--batch", "0"],
        "index: videos missing": ["index", "gone", "--out", "o", "--checkpoint", "m.safetensors"],
        "search: index missing": ["search", "a dog", "--index", "gone"],
        "search: not an index": ["search", "a dog", "--index", "not_an_index"],
        "search: top-k 0": ["search", "a dog", "--index", "not_an_index", "--top-k", "0"],
        "export: not a checkpoint": ["export", "notckpt.pt", "--out", "x.safetensors"],
        "export: source missing": ["export", "gone.pth", "--out", "x.safetensors"],
        "merge: not a checkpoint": ["merge", "notckpt.pt", "notckpt.pt", "--alpha", "0.5", "--out", "x.safetensors"],
        "merge: alpha 2": ["merge", "m.safetensors", "m.safetensors", "--alpha", "2", "--out", "x.safetensors"],
        "merge: alpha abc": ["merge", "m.safetensors", "m.safetensors", "--alpha", "abc", "--out", "x.safetensors"],
        "splits: unknown protocol": ["splits", "make", "bogus", "--labels", d["labels"], "--out", "o"],
        "splits: shots 0": ["splits", "make", "fewshot", "--train", d["train_list"], "--labels", d["labels"],
                            "--shots", "0", "--out", "o"],
        "splits: seeds a": ["splits", "make", "base2novel", "--train", d["train_list"], "--val", d["val_list"],
                            "--labels", d["labels"], "--seeds", "a", "--out", "o"],
        "bench data: frames 0": ["bench", "data", "--data", d["val_list"], "--root", d["root"], "--frames", "0"],
        "bench data: list missing": ["bench", "data", "--data", "gone.txt", "--root", d["root"]],
        "bench train: frames 0": ["bench", "train", "--arch", "tiny", "--frames", "0"],
        "bench train: steps 0": ["bench", "train", "--arch", "tiny", "--steps", "0"],
        "bench train: micro-batch x": ["bench", "train", "--arch", "tiny", "--micro-batch", "x"],
        "bench train: device tpu": ["bench", "train", "--arch", "tiny", "--device", "tpu"],
        "bench train: workers abc": ["bench", "train", "--arch", "tiny", "--data", d["val_list"], "--root", d["root"],
                                     "--workers", "abc"],
        "bench eval: batch 0": ["bench", "eval", "--arch", "tiny", "--batch", "0"],
        "bench memory: batch 0": ["bench", "memory", "--batch", "0"],
        "bench memory: unknown arch": ["bench", "memory", "--arch", "ViT-Q-99"],
        "viz tsne: frames 0": [*tsne, "--frames", "0"],
        "viz tsne: frames -2": [*tsne, "--frames", "-2"],
        "viz tsne: device tpu": [*tsne, "--device", "tpu"],
        "viz attention: frames 0": ["viz", "attention", video, "--checkpoint", "m.safetensors", "--frames", "0",
                                    "--out", "o"],
        "viz attention: device tpu": ["viz", "attention", video, "--checkpoint", "m.safetensors", "--device",
                                      "tpu", "--out", "o"],
        "viz confusion: summary.csv": ["viz", "confusion", "run/summary.csv", "--out", "o"],
        "viz confusion: per_class.csv": ["viz", "confusion", "run/per_class.csv", "--out", "o"],
        "viz confusion: empty": ["viz", "confusion", "run", "--out", "o"],
        "viz curves: no loss column": ["viz", "curves", "run", "--out", "o"],
        "viz curves: not a run": ["viz", "curves", "notes.txt", "--out", "o"],
        "config show: unknown recipe": ["config", "show", "bogus"],
        "config show: bad set": ["config", "show", "demo", "--set", "train.lr"],
    }


CASES = list(_cases({"val_list": "V", "train_list": "T", "labels": "L", "root": "R"}, "VIDEO"))


def _listing(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.mark.parametrize("case", CASES)
def test_wrong_input_is_one_error_line_exit_2_and_nothing_written(place, case):
    args = _cases(place["demo"], place["video"])[case]
    before = _listing(place["root"])
    code, out, err = run_main(args, place["root"])
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and out == "", (case, code, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), (case, err)
    assert _listing(place["root"]) == before, case  # nothing created, nothing changed

"""`vifi merge` and `vifi eval --wise-ft` on the demo videos: a merged file evaluates exactly as its --wise-ft row,
α = 0 is the zero-shot weights, bad input is one line before anything is written, and the protocol path gives one
aggregated row per α and resumes."""

import copy
import hashlib
import json
import sys

import pandas as pd
import pytest

from tests.conftest import vifi_in_process as _vifi  # in this process: a new one costs seconds of imports a call
import torch

from vifi.data.demo import class_names
from vifi.model.backbone import TINY_CLIP, build_clip
from vifi.model.checkpoint import read_facts, save_weights
from vifi.model.vifi_clip import ViFiCLIP

# TINY_CLIP with 64-wide attention heads: what vifi infers from a plain state dict, so plain CLIP weights of this
# architecture load back as the same model (TINY_CLIP's 32-wide heads cannot be read off tensor shapes).
TINY64 = copy.deepcopy(TINY_CLIP)
TINY64["vision_cfg"]["head_width"] = 64
TINY64["text_cfg"]["heads"] = 1


def _model(seed: int, arch=TINY64) -> ViFiCLIP:
    torch.manual_seed(seed)
    return ViFiCLIP(build_clip(copy.deepcopy(arch)), copy.deepcopy(arch), "both")


@pytest.fixture
def models(tmp_path):
    """A: zero-shot end (a checkpoint, and the same weights as a plain CLIP state dict); B: the 'fine-tuned' end."""
    from safetensors.torch import save_file

    facts = {"frames": 4, "input_size": 64, "class_names": class_names()}
    a, b = _model(0), _model(1)
    save_weights(tmp_path / "a.safetensors", a, facts)
    save_weights(tmp_path / "b.safetensors", b, facts)
    save_file({k: v.contiguous() for k, v in a.clip.state_dict().items()}, str(tmp_path / "clip-a.safetensors"))
    return tmp_path


def _data(demo_data):
    return ["--data", demo_data["val_list"], "--labels", demo_data["labels"], "--root", demo_data["root"],
            "--workers", "0"]



def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_merged_file_evaluates_exactly_as_its_wise_ft_row(models, demo_data):
    merged = models / "m.safetensors"
    proc = _vifi("merge", models / "a.safetensors", models / "b.safetensors", "--alpha", "0.5", "--out", merged)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{merged}\talpha 0.5\n"  # one result line
    facts = read_facts(merged)
    assert (facts.frames, facts.class_names) == (4, tuple(class_names()))  # B's facts
    assert facts.merged_from == {"alpha": 0.5, "a": str(models / "a.safetensors"),
                                 "a_sha256": _sha(models / "a.safetensors"), "b": str(models / "b.safetensors"),
                                 "b_sha256": _sha(models / "b.safetensors")}
    proc = _vifi("eval", "--checkpoint", merged, *_data(demo_data), "--out", models / "ev-merged")
    assert proc.returncode == 0, proc.stderr
    proc = _vifi("eval", "--checkpoint", models / "b.safetensors", "--wise-ft-from", models / "a.safetensors",
                 "--wise-ft", "0,0.5,1", *_data(demo_data), "--out", models / "ev-wise", "--json")
    assert proc.returncode == 0, proc.stderr
    table = json.loads(proc.stdout)["table"]
    assert [row["alpha"] for row in table] == [0.0, 0.5, 1.0] and all(row["videos"] == 12 for row in table)
    single = json.loads((models / "ev-merged" / "results.json").read_text())
    assert table[1]["top1"] == round(single["top1"], 2)
    assert (models / "ev-merged" / "predictions.csv").read_text() == \
        (models / "ev-wise" / "alpha-0.5" / "predictions.csv").read_text()
    for row in table:  # the table's rows are the α folders' own results
        part = json.loads((models / "ev-wise" / f"alpha-{row['alpha']:g}" / "results.json").read_text())
        assert row["top1"] == round(part["top1"], 2) and row["mean_class_top1"] == round(part["mean_class_top1"], 2)


def test_alpha_0_is_the_zero_shot_clip_and_alpha_1_the_checkpoint(models, demo_data, tmp_path):
    """A from --clip (plain CLIP weights): α = 0 predicts as plain CLIP evaluated with B's inputs, α = 1 as B."""
    from vifi.runs import run_eval
    from vifi.wise_ft import WiseFt, run_wise_ft_eval

    data = dict(data=str(demo_data["val_list"]), labels=str(demo_data["labels"]), root=str(demo_data["root"]))
    common = dict(num_workers=0, show_progress=False)
    wise = WiseFt([0.0, 1.0], str(models / "clip-a.safetensors"), "clip")
    run_wise_ft_eval(wise, str(models / "b.safetensors"), out=tmp_path / "w", **data, **common)
    run_eval(None, out=tmp_path / "plain", clip=str(models / "clip-a.safetensors"), frames=4, **data, **common)
    run_eval(str(models / "b.safetensors"), out=tmp_path / "b", **data, **common)
    for alpha, alone in (("0", "plain"), ("1", "b")):
        ours = pd.read_csv(tmp_path / "w" / f"alpha-{alpha}" / "predictions.csv")
        assert ours.equals(pd.read_csv(tmp_path / alone / "predictions.csv")), alpha


def test_overwrite_with_other_alphas_leaves_only_their_folders(models, demo_data, tmp_path):
    """`--overwrite` replaces the results: α folders of the earlier run would sit beside a table that lacks them.
    The whole folder is replaced (built beside it, swapped in at the end), as prepare/splits outputs are."""
    from vifi.wise_ft import WiseFt, run_wise_ft_eval

    data = dict(data=str(demo_data["val_list"]), labels=str(demo_data["labels"]), root=str(demo_data["root"]))
    common = dict(num_workers=0, show_progress=False, limit=2)
    out = tmp_path / "w"
    run_wise_ft_eval(WiseFt([0.0, 1.0], str(models / "a.safetensors"), "any"), str(models / "b.safetensors"),
                     out=out, **data, **common)
    run_wise_ft_eval(WiseFt([0.5], str(models / "a.safetensors"), "any"), str(models / "b.safetensors"),
                     out=out, overwrite=True, **data, **common)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["alpha-0.5"]
    assert pd.read_csv(out / "results.csv")["alpha"].tolist() == [0.5]


def _main(monkeypatch, capsys, *args):
    """The `vifi` entry point in this process (a user error exits before any model is built)."""
    from vifi.cli.app import main

    monkeypatch.setattr(sys, "argv", ["vifi", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr()


def test_bad_inputs_are_one_line_and_leave_files_untouched(models, demo_data, monkeypatch, capsys):
    from vifi.config import PromptConfig
    from vifi.model.checkpoint import add_prompts

    a, b = models / "a.safetensors", models / "b.safetensors"
    other = _model(2, TINY_CLIP)  # 32-wide heads: same tensor shapes as A, another model
    save_weights(models / "tiny.safetensors", other, {"frames": 4})
    wider = copy.deepcopy(TINY64)
    wider["embed_dim"] = 32
    save_weights(models / "wide.safetensors", _model(3, wider), {"frames": 4})
    prompted = _model(1)
    add_prompts(prompted, PromptConfig(vision_tokens=2, vision_depth=1, text_tokens=2, text_depth=1), b)
    prompted.set_train_mode("prompt")
    save_weights(models / "prompts.safetensors", prompted, {"frames": 4})
    existing = models / "existing.safetensors"
    existing.write_bytes(b"keep me")
    before = {p.name: _sha(p) for p in models.iterdir()}
    cases = {
        "different architecture": (["merge", a, models / "wide.safetensors"],
                                   "are different architectures: 'text_projection' is (64, 64) in A and (64, 32) in B"),
        "same shapes, other heads": (["merge", a, models / "tiny.safetensors"],
                                     "same tensor shapes but vision_cfg.head_width is 64 in A and 32 in B"),
        "prompt artifact": (["merge", a, models / "prompts.safetensors"], "holds deep prompts"),
        "missing model": (["merge", models / "nowhere" / "a.safetensors", b], "model A " + str(models / "nowhere")),
        "eval missing model A": (["eval", "--checkpoint", b, "--wise-ft-from", models / "gone", "--wise-ft", "0,1",
                                  *_data(demo_data)], f"--wise-ft-from {models / 'gone'}: not found"),
        "unknown tag as B": (["merge", a, "nowheretag"], "model B nowheretag: not a local file"),
        "eval unknown tag as A": (["eval", "--checkpoint", b, "--wise-ft-from", "nowheretag", "--wise-ft", "0,1",
                                   *_data(demo_data)], "--wise-ft-from nowheretag: not a local file"),
        "alpha not a number": (["merge", a, b, "--alpha", "half"], "--alpha 'half': 'half' is not a number"),
        "existing --out": (["merge", a, b, "--out", existing], "exists; pass --overwrite"),
        "eval alpha out of range": (["eval", "--checkpoint", b, "--clip", a, "--wise-ft", "0,2", *_data(demo_data)],
                                    "--wise-ft '0,2': α 2 is outside [0, 1]"),
        "eval without model A": (["eval", "--checkpoint", b, "--wise-ft", "0.5", *_data(demo_data)],
                                 "--wise-ft needs model A"),
    }
    for name, (args, message) in cases.items():
        if args[0] == "merge" and "--out" not in args:
            args = [*args, "--out", models / "new.safetensors"]
        if "--alpha" not in args and args[0] == "merge":
            args = [*args, "--alpha", "0.5"]
        if args[0] == "eval":
            args = [*args, "--out", models / "ev"]
        code, out = _main(monkeypatch, capsys, *args)
        lines = out.err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (name, out.err)
        assert message in lines[0], (name, lines[0])
        assert out.out == "", name
    assert {p.name: _sha(p) for p in models.iterdir()} == before  # nothing written, nothing changed


@pytest.mark.slow
def test_base2novel_protocol_gives_one_aggregated_row_per_alpha_and_resumes(models, demo_data, tmp_path, monkeypatch,
                                                                           capsys):
    from vifi.splits import make_base2novel

    make_base2novel(demo_data["train_list"], demo_data["val_list"], demo_data["labels"], tmp_path / "b2n", shots=2)
    out = tmp_path / "proto"
    args = ["eval", "--protocol", "base2novel", "--splits", tmp_path / "b2n", "--root", demo_data["root"],
            "--seeds", "1,2", "--checkpoint", f"{models / 'b.safetensors'},{models / 'a.safetensors'}",
            "--wise-ft-from", models / "a.safetensors", "--wise-ft", "0,1", "--workers", "0", "--out", out]
    code, _ = _main(monkeypatch, capsys, *args)
    assert code == 0
    result = json.loads((out / "results.json").read_text())
    assert [row["alpha"] for row in result["summary"]] == [0.0, 1.0]  # one aggregated row per α (one dataset)
    assert result["wise_ft"]["alphas"] == [0.0, 1.0]
    for row in result["summary"]:
        part = json.loads((out / f"alpha-{row['alpha']:g}" / "results.json").read_text())
        assert {k: v for k, v in row.items() if k != "alpha"} == part["summary"][0]
    runs = pd.read_csv(out / "runs.csv")
    seed2 = runs[runs.seed == 2].set_index("alpha")  # seed 2's B is A itself: every α is A
    assert seed2.loc[0.0, "novel_top1"] == seed2.loc[1.0, "novel_top1"]
    assert (runs["base_videos"] == 6).all() and (runs["novel_videos"] == 6).all()
    for _, row in runs.iterrows():  # each row is its α folder's evaluation
        novel = json.loads((out / f"alpha-{row.alpha:g}" / "custom" / f"seed{row.seed}" / "novel" /
                            "results.json").read_text())
        assert row.novel_top1 == round(novel["top1"], 2)
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("predictions.csv")}
    code, again = _main(monkeypatch, capsys, *args)
    assert code == 0 and "evaluation of" not in again.err  # every evaluation read back, none redone
    assert {p: p.stat().st_mtime_ns for p in out.rglob("predictions.csv")} == stamp
    assert json.loads((out / "results.json").read_text())["summary"] == result["summary"]


def test_tables_show_alpha_exactly_so_close_alphas_stay_distinct(capsys):
    # α 0.333 and 0.335 printed as 0.33 twice; accuracies keep their 2 decimals.
    from vifi.results import frame_to_markdown, print_table

    table = pd.DataFrame({"alpha": [0.0, 0.333, 0.335, 1.0], "videos": [12] * 4, "top1": [50.0, 66.6667, 70.0, 75.125]})
    md = frame_to_markdown(table).splitlines()
    assert md[2:] == ["| 0 | 12 | 50.00 |", "| 0.333 | 12 | 66.67 |", "| 0.335 | 12 | 70.00 |", "| 1 | 12 | 75.12 |"]
    print_table(table, "WiSE-FT")
    shown = capsys.readouterr().out
    assert "0.333" in shown and "0.335" in shown and "66.67" in shown

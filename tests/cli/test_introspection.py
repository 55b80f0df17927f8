"""`vifi config show`, `vifi recipes`, `--version` and shell completion, through the real CLI."""

import os
import subprocess
import sys

import pytest
import yaml

from vifi.config import load_config, recipe_names


def _vifi(*args, env=None):
    return subprocess.run([sys.executable, "-m", "vifi", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=env)


def test_config_show_prints_the_resolved_yaml_with_overrides():
    proc = _vifi("config", "show", "k400", "--set", "train.lr=1e-5", "--set", "data.frames=8")
    assert proc.returncode == 0, proc.stderr
    shown = yaml.safe_load(proc.stdout)  # all of stdout is the YAML
    expected = load_config("k400").model_dump(mode="json")
    expected["train"]["lr"], expected["data"]["frames"] = 1e-5, 8
    assert shown == expected
    assert shown["train"]["global_batch"] == 256 and shown["model"]["clip"] == "openai"  # inherited from _paper


def test_config_show_rejects_an_unknown_key_in_one_line():
    proc = _vifi("config", "show", "demo", "--set", "train.bogus=1")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == ["error: unknown config key 'train.bogus' in demo; see `vifi config "
                                                "show` for the valid keys"]


def test_recipes_lists_every_recipe_once_with_its_protocol():
    proc = _vifi("recipes")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split()[1] for line in proc.stdout.splitlines()}
    assert sorted(rows) == recipe_names()
    assert rows["k400"] == "zeroshot" and rows["k400-supervised"] == "supervised"
    assert rows["prompt-b2n-ucf101"] == "base2novel" and rows["fewshot-ssv2"] == "fewshot"
    assert "SPEC" not in proc.stdout  # descriptions do not cite files users do not have


def test_shell_completion_completes_subcommands_and_options():
    env = {**os.environ, "_VIFI_COMPLETE": "complete_bash", "COMP_WORDS": "vifi rec", "COMP_CWORD": "1"}
    assert _vifi(env=env).stdout.split() == ["recipes"]
    env = {**os.environ, "_VIFI_COMPLETE": "complete_bash", "COMP_WORDS": "vifi zeroshot --ba", "COMP_CWORD": "2"}
    assert sorted(_vifi(env=env).stdout.split()) == ["--backend", "--batch"]


def _leaves(command, path=("vifi",)):
    subs = getattr(command, "commands", None)
    if not subs:
        yield " ".join(path), command
        return
    for name, sub in subs.items():
        yield from _leaves(sub, (*path, name))


def test_every_subcommand_help_shows_an_example():
    from vifi.cli.app import build_command

    leaves = dict(_leaves(build_command()))
    assert len(leaves) >= 16
    assert [name for name, cmd in leaves.items() if "Example: vifi" not in (cmd.help or "")
            and "Example: ls" not in (cmd.help or "")] == []


def test_old_spellings_parse_to_the_same_typed_values():
    from vifi.cli.app import build_command

    finetune = build_command().commands["finetune"]
    old = finetune.make_context("finetune", ["demo", "--train", "image", "--checkpointing", "--backend", "pyav"])
    new = finetune.make_context("finetune", ["demo", "--train-mode", "image", "--grad-checkpointing"])
    assert old.params["train_mode"] == new.params["train_mode"] == "image"
    assert old.params["checkpointing"] is new.params["checkpointing"] is True
    assert old.params["backend"] == "pyav"
    evaluate = build_command().commands["eval"]
    assert evaluate.make_context("eval", ["--train"]).params["train"] is True
    assert evaluate.make_context("eval", ["--fine-tune"]).params["train"] is True


def test_a_value_outside_the_choices_is_one_line_before_any_work(tmp_path):
    for args, needle in ((["bench", "train", "--mode", "all"], "'all' is not one of 'both', 'image', 'text'"),
                         (["eval", "--protocol", "b2n", "--out", tmp_path / "o"], "'b2n' is not one of 'zeroshot'"),
                         (["prepare", "generic", "--root", tmp_path, "--out", tmp_path / "o", "--format", "png"],
                          "'png' is not one of 'mjpeg', 'h264-intra', 'h264'"),
                         (["zeroshot", "x.mp4", "--labels", "a", "--backend", "opencv"], "'opencv' is not one of")):
        proc = _vifi(*args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr
        assert lines[0].startswith("error: ") and "--help`)" in lines[0]
    assert not (tmp_path / "o").exists()
    # A boolean flag takes no value: `--vanilla true` leaves "true" as a (missing) video, said in one line.
    proc = _vifi("zeroshot", "--vanilla", "true", "--labels", "a,b", "--clip", "x.pt")
    assert proc.returncode == 2 and proc.stderr.strip() == "error: video not found: true"


def _error_of(args):
    """The VifiError message a command line stops with (in-process: the CLI turns it into `error: …`, exit 2)."""
    from vifi.cli.app import build_command
    from vifi.errors import VifiError

    with pytest.raises(VifiError) as caught:
        build_command().main([str(a) for a in args], prog_name="vifi", standalone_mode=False)
    return str(caught.value)


def test_config_show_refuses_exactly_what_a_run_refuses(tmp_path):
    # Values a run used to refuse only after starting (frozen model, a micro-batch that does not divide the batch,
    # a template without '{}', an unknown architecture): `config show` accepted them. Both now stop with the same line.
    for setting, needle in (("model.train=frozen", "leaves nothing to train"),
                            ("train.micro_batch=5", "global_batch 12 is not a multiple of train.micro_batch 5"),
                            ("model.prompt_template=a photo", "must contain '{}'"),
                            ("model.arch=ViT-Q-99", "unknown architecture 'ViT-Q-99'")):
        shown = _error_of(["config", "show", "demo", "--set", setting])
        assert needle in shown
        assert _error_of(["finetune", "demo", "--set", setting, "--out", tmp_path / "run"]) == shown
        assert not (tmp_path / "run").exists()
    proc = _vifi("config", "show", "demo", "--set", "train.micro_batch=5")
    assert proc.returncode == 2 and proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1


def test_help_keeps_square_brackets_rich_would_read_as_markup():
    # Rich took `[viz]`, `[track]` and `[checkpoints, frames, grid, grid]` for markup tags and dropped them.
    env = {**os.environ, "COLUMNS": "300"}
    for args, text in ((["--help"], "pip install 'vifi[viz]'"),
                       (["finetune", "--help"], "pip install 'vifi[track]'"),
                       (["prompt", "--help"], "pip install 'vifi[track]'"),
                       (["viz", "attention", "--help"], ".npy [checkpoints, frames, grid, grid]")):
        proc = _vifi(*args, env=env)
        assert proc.returncode == 0 and text in proc.stdout, (args, proc.stdout)
        assert "\\[" not in proc.stdout  # the escape itself never shows

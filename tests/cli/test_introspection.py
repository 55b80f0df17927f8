"""`vifi config show`, `vifi recipes`, `--version` and shell completion, through the real CLI."""

import os
import subprocess
import sys

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

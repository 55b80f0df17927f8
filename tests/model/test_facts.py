"""CheckpointFacts: one record written into safetensors metadata and read back; flags win over it with one notice."""

import json

import pytest

from vifi.config import PromptConfig
from vifi.errors import VifiError
from vifi.model.backbone import TINY_CLIP
from vifi.model.checkpoint import read_facts, read_metadata, save_weights
from vifi.model.facts import (CheckpointFacts, check_training_inputs, describe, from_metadata, inference_inputs,
                              plain_clip, to_metadata)


def _facts(**changes):
    values = dict(arch=TINY_CLIP, train_mode="prompt", frames=16, input_size=64, template="X X {}.",
                  prompt=PromptConfig(vision_tokens=2, text_tokens=2, vision_depth=1, text_depth=3, init=""),
                  arch_name="ViT-B-16", class_names=("a", "b"), base_path="/m/base.safetensors", base_sha256="ab" * 32,
                  source="/m/release.pth", path="/m/x.safetensors")
    values.update(changes)
    return CheckpointFacts(**values)


@pytest.mark.parametrize("template", ["X X {}.", None])
def test_every_fact_survives_the_metadata_round_trip(template):
    facts = _facts(template=template)
    meta = to_metadata(facts)
    assert all(isinstance(v, str) for v in meta.values()) and "path" not in meta
    assert json.loads(meta["template"]) == template  # bare names are null, never "" (which is no template at all)
    assert from_metadata(meta, "/m/x.safetensors") == facts


def test_a_vanilla_trained_checkpoint_reads_back_as_bare_class_names(tmp_path, tiny_model):
    save_weights(tmp_path / "vanilla.safetensors", tiny_model, {"frames": 4, "template": None})
    assert read_metadata(tmp_path / "vanilla.safetensors")["template"] == "null"
    facts = read_facts(tmp_path / "vanilla.safetensors")
    assert (facts.template, facts.frames, facts.input_size, facts.train_mode) == (None, 4, 64, "both")
    assert inference_inputs(facts).template is None


def test_describe_takes_architecture_train_mode_and_prompts_from_the_model(tiny_model):
    facts = describe(tiny_model, frames=8)
    assert facts.arch == tiny_model.arch and facts.train_mode == "both" and facts.prompt is None
    assert (facts.frames, facts.input_size, facts.template) == (8, 64, "a photo of a {}.")


def test_damaged_metadata_is_a_user_error_naming_the_file():
    meta = to_metadata(_facts())
    meta["frames"] = "sixteen"
    with pytest.raises(VifiError, match=r"^/m/x\.safetensors: damaged vifi metadata"):
        from_metadata(meta, "/m/x.safetensors")
    with pytest.raises(VifiError, match="damaged vifi metadata"):
        from_metadata({"frames": "16"}, "/m/x.safetensors")  # no architecture


def test_flags_win_and_each_contradiction_gets_one_notice(capsys):
    facts = _facts(train_mode="both", prompt=None, template="a photo of a {}.")
    assert inference_inputs(facts) == inference_inputs(facts, frames=16, template="a photo of a {}.")
    assert capsys.readouterr().err == ""  # agreeing flags are no contradiction
    chosen = inference_inputs(facts, frames=32, vanilla=True)
    assert (chosen.frames, chosen.input_size, chosen.template) == (32, 64, None)
    err = capsys.readouterr().err.splitlines()
    assert err == ["notice: --frames 32 overrides the 16 frames /m/x.safetensors was trained with",
                   "notice: --vanilla: bare class names instead of 'a photo of a {}.', the class text "
                   "/m/x.safetensors was trained with"]
    inference_inputs(facts, template="a video of {}.")
    assert capsys.readouterr().err.count("notice: --template: 'a video of {}.' instead of") == 1


def test_plain_clip_has_nothing_to_contradict(capsys):
    facts = plain_clip(TINY_CLIP)
    chosen = inference_inputs(facts, frames=8, template="a video of {}.")
    assert (chosen.frames, chosen.input_size, chosen.template) == (8, 64, "a video of {}.")
    assert inference_inputs(facts).frames == 32 and inference_inputs(facts).template == "a photo of a {}."
    assert capsys.readouterr().err == ""


def test_training_from_a_checkpoint_notes_other_frames_and_size(capsys):
    facts = _facts()
    check_training_inputs(facts, 16, 64, "the bridge")
    assert capsys.readouterr().err == ""
    check_training_inputs(facts, 32, 64, "the bridge")
    assert capsys.readouterr().err.splitlines() == [
        "notice: the bridge /m/x.safetensors was trained with frames 16; this run uses 32 (data.frames; "
        "--set data.frames=16 to match)"]
    # another input size cannot run (the positional embedding fits 64×64): refused, not noted
    with pytest.raises(VifiError, match=r"takes 64×64 crops .* data.input_size 224; --set data.input_size=64"):
        check_training_inputs(facts, 16, 224, "the bridge")


@pytest.mark.parametrize("old,expected", [("", None), ("a video of {}.", "a video of {}.")])
def test_checkpoints_from_before_the_record_keep_their_template(old, expected):
    # Earlier builds wrote `prompt_template`, "" meaning bare class names (vanilla).
    meta = {k: v for k, v in to_metadata(_facts()).items() if k != "template"}
    meta["prompt_template"] = old
    assert from_metadata(meta, "/m/old.safetensors").template == expected

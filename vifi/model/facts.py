"""What a checkpoint says about itself: one typed record, written into safetensors metadata by `to_metadata` and
read back by `from_metadata`; every consumer (eval, zeroshot, viz, prompt --bridge, export) reads this record.

Facts are what the model was trained with (architecture, train mode, frames, input size, class-name template,
prompt sizes and init phrase, the base of a prompt artifact). They are the defaults of every inference command;
an explicit flag still wins, with one notice on stderr when it contradicts the checkpoint (`inference_inputs`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, Mapping

from vifi.config import PromptConfig
from vifi.errors import CheckpointError, VifiError

PAPER_TEMPLATE = "a photo of a {}."
# The reference's zero-shot, few-shot and base-to-novel models all see 32 frames (docs/design.md).
DEFAULT_FRAMES = 32


@dataclass(frozen=True)
class CheckpointFacts:
    arch: dict[str, Any]  # open_clip architecture dict (vifi.model.backbone), read off the weights
    train_mode: str  # how it was trained: both | image | text | frozen | prompt
    frames: int = DEFAULT_FRAMES  # frames per clip it was trained with
    input_size: int = 0  # crop side it was trained with; 0 = the architecture's image size (see __post_init__)
    template: str | None = PAPER_TEMPLATE  # class-name text; None = bare class names (vanilla CLIP)
    prompt: PromptConfig | None = None  # deep prompt sizes, depths and init phrase (prompting models only)
    arch_name: str | None = None  # open_clip name when the source names one (a paper config's MODEL.ARCH)
    class_names: tuple[str, ...] = ()  # the classes it was trained on, when known
    base_path: str | None = None  # prompt artifacts: the checkpoint the prompts were learned on ...
    base_sha256: str | None = None  # ... and its hash (loading onto another base is refused)
    source: str | None = None  # exports: the paper release this file was converted from
    merged_from: dict[str, Any] | None = None  # `vifi merge`: alpha, a, a_sha256, b, b_sha256 (vifi.model.merge)
    path: str | None = None  # the file these facts were read from (never stored); None = plain CLIP weights

    def __post_init__(self):
        if not self.input_size:
            object.__setattr__(self, "input_size", int(self.arch["vision_cfg"]["image_size"]))
        object.__setattr__(self, "class_names", tuple(self.class_names))

    @property
    def is_checkpoint(self) -> bool:
        """False for plain CLIP weights: then nothing here was trained, and no flag can contradict it."""
        return self.path is not None


def describe(model, *, train_mode: str | None = None, **run_facts) -> CheckpointFacts:
    """The facts of `model` (architecture, train mode, prompts, base) plus the run's (frames, template, ...)."""
    prompts = model.prompts.cfg if model.prompts is not None else None
    base = model.base_ref if prompts is not None else {}
    if "template" not in run_facts and prompts is not None:
        from vifi.model.prompts import Prompts

        run_facts["template"] = Prompts.template_for(prompts)
    return CheckpointFacts(arch=model.arch, train_mode=train_mode or model.train_mode, prompt=prompts,
                           base_path=base.get("path"), base_sha256=base.get("sha256"), **run_facts)


def plain_clip(arch: dict[str, Any]) -> CheckpointFacts:
    """Untrained CLIP weights: the paper's zero-shot template and 32 frames, none of it the weights' own."""
    return CheckpointFacts(arch=arch, train_mode="frozen")


# ---- metadata: one writer, one reader ------------------------------------------------------------------------
# safetensors metadata is str -> str. Strings are stored as they are, everything else as JSON; the template is
# always JSON so that bare class names (null) can never be confused with a template.
_JSON = {"arch", "frames", "input_size", "template", "class_names", "merged_from"}
_NOT_STORED = {"path"}


def to_metadata(facts: CheckpointFacts) -> dict[str, str]:
    meta = {}
    for f in fields(facts):
        value = getattr(facts, f.name)
        if f.name in _NOT_STORED or (value is None and f.name != "template"):
            continue
        if f.name == "prompt":
            meta[f.name] = value.model_dump_json()
        elif f.name == "class_names":
            if value:
                meta[f.name] = json.dumps(list(value))
        else:
            meta[f.name] = json.dumps(value) if f.name in _JSON else str(value)
    return meta


def from_metadata(meta: Mapping[str, str], path: str) -> CheckpointFacts:
    """The record `to_metadata` wrote; a missing or unreadable fact is a user error naming the file."""
    values: dict[str, Any] = {"path": str(path)}
    if "template" not in meta and "prompt_template" in meta:
        # Checkpoints written before this record spelled the template `prompt_template`, "" meaning bare names.
        values["template"] = meta["prompt_template"] or None
    try:
        for f in fields(CheckpointFacts):
            if f.name not in meta or f.name in _NOT_STORED:
                continue
            raw = meta[f.name]
            if f.name == "prompt":
                values[f.name] = PromptConfig.model_validate_json(raw)
            elif f.name in _JSON:
                values[f.name] = json.loads(raw)
            else:
                values[f.name] = raw
        return CheckpointFacts(**values)
    except (ValueError, TypeError, KeyError) as exc:  # json, pydantic and missing required fields
        raise CheckpointError(f"{path}: damaged vifi metadata ({str(exc).splitlines()[0][:120]}); "
                        "re-export or re-train it") from None


# ---- what an inference run feeds the model -------------------------------------------------------------------
@dataclass(frozen=True)
class InferenceInputs:
    frames: int
    input_size: int
    template: str | None  # None = bare class names


def inference_inputs(facts: CheckpointFacts, *, frames: int | None = None, template: str | None = None,
                     vanilla: bool = False) -> InferenceInputs:
    """The checkpoint's frames, input size and template, each replaced by its flag when one is given.

    Flags: `frames`/`template` None = not given; `vanilla` = bare class names. A flag that contradicts what the
    checkpoint was trained with gets one notice on stderr (the run may be meaningless, but it was asked for).
    """
    chosen_frames = facts.frames if frames is None else frames
    if vanilla:
        chosen_template = None
    else:
        chosen_template = facts.template if template is None else template
    if facts.is_checkpoint:
        if chosen_frames != facts.frames:
            notice(f"--frames {chosen_frames} overrides the {facts.frames} frames {facts.path} was trained with")
        if chosen_template != facts.template:
            said = "bare class names" if chosen_template is None else repr(chosen_template)
            own = "bare class names" if facts.template is None else repr(facts.template)
            flag = "--vanilla" if vanilla else "--template"
            notice(f"{flag}: {said} instead of {own}, the class text {facts.path} was trained with")
    return InferenceInputs(chosen_frames, facts.input_size, chosen_template)


def check_training_inputs(facts: CheckpointFacts, frames: int, input_size: int, role: str) -> None:
    """A run that starts from a checkpoint keeps its own frame count (as the reference does), with one notice when
    the checkpoint was trained with another; its input size must be the one the model takes."""
    check_input_size(facts, input_size, role)
    if frames != facts.frames:
        notice(f"{role} {facts.path} was trained with frames {facts.frames}; this run uses {frames} (data.frames; "
               f"--set data.frames={facts.frames} to match)")


def check_input_size(facts: CheckpointFacts, input_size: int, role: str) -> None:
    """A checkpoint's image tower takes the run's crop size (`check_arch_input_size`)."""
    check_arch_input_size(facts.arch, f"{role} {facts.path}", input_size, CheckpointError)


def check_arch_input_size(arch: Mapping[str, Any], source: str, input_size: int, error=VifiError) -> None:
    """The image tower's positional embedding fits one crop size: another one used to start the run and crash at its
    first step. Refused before any work instead, saying how to match (`source` names the weights)."""
    takes = int(arch["vision_cfg"]["image_size"])
    if input_size != takes:
        raise error(f"{source} takes {takes}×{takes} crops (its positional embedding is sized for them) but this run "
                    f"uses data.input_size {input_size}; --set data.input_size={takes}")


def notice(message: str) -> None:
    """A one-line note for the user; stderr, since stdout carries results; once, from the main process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
        return
    from vifi import console

    console.note(f"notice: {message}")

"""Typed run configuration: YAML recipe in, `--set section.key=value` overrides, resolved YAML out.

Unknown keys and wrong types are user errors (VifiError with the offending key), never silent defaults.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from vifi.errors import VifiError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    train_list: Optional[str] = None  # `relative/path label` per line
    val_list: Optional[str] = None
    labels: Optional[str] = None  # `id,name` CSV, class index = row order
    root: Optional[str] = None  # folder the list paths are relative to
    frames: int = 32
    input_size: int = 224
    num_workers: Union[int, Literal["auto"]] = "auto"  # auto: the CPU cores available to each process (docs/performance.md)
    backend: Literal["decord", "pyav"] = "decord"
    demo: bool = False  # generate the synthetic demo dataset into <out>/demo-data when the lists are absent
    quarantine: Optional[str] = None  # videos training skips (default: quarantine.txt beside the train list, if any)


class PromptConfig(_Section):
    """Deep vision + language prompts (SPEC §1.4); all zero = no prompts."""

    vision_tokens: int = 0  # n_v
    text_tokens: int = 0  # n_t
    vision_depth: int = 0  # D_v: prompt sets in the image tower (input + D_v-1 blocks); 0 = none
    text_depth: int = 0  # D_t
    init: str = "a photo of a"  # context initialisation, used only when text_tokens <= 4 (the reference's rule)

    @model_validator(mode="after")
    def _check(self):
        for tokens, depth, tower in ((self.vision_tokens, self.vision_depth, "vision"),
                                     (self.text_tokens, self.text_depth, "text")):
            if tokens < 0 or depth < 0:
                raise ValueError(f"model.prompt.{tower}_tokens/{tower}_depth must be ≥ 0")
            if (tokens == 0) != (depth == 0):
                raise ValueError(f"model.prompt.{tower}_tokens and {tower}_depth must both be 0 or both positive")
        return self

    @property
    def enabled(self) -> bool:
        return self.vision_depth > 0 or self.text_depth > 0


class ModelConfig(_Section):
    arch: str = "ViT-B-16"  # an open_clip architecture name, or "tiny" for the random-init test/demo model
    clip: Optional[str] = None  # weights: OpenAI .pt archive, state dict (.pt/.bin/.safetensors) or open_clip tag
    init_from: Optional[str] = None  # a vifi checkpoint whose weights start this run (weights only)
    train: Literal["both", "image", "text", "frozen", "prompt"] = "both"  # prompt: only model.prompt tensors train
    prompt_template: str = "a photo of a {}."
    vanilla: bool = False  # zero-shot with bare class names, no template, no prompt parameters
    prompt: PromptConfig = PromptConfig()

    @model_validator(mode="after")
    def _check_prompt(self):
        if self.train == "prompt" and not self.prompt.enabled:
            raise ValueError("model.train=prompt needs model.prompt sizes (e.g. a prompt-* recipe)")
        if self.prompt.enabled and self.train != "prompt":
            raise ValueError("model.prompt is set but model.train is not 'prompt'; prompts train with everything "
                             "else frozen (SPEC §1.5)")
        if self.prompt.enabled and self.vanilla:
            raise ValueError("model.vanilla means plain CLIP without prompt parameters; drop model.prompt")
        return self


class TrainConfig(_Section):
    epochs: int = 10
    global_batch: int = 256
    micro_batch: Union[int, Literal["auto"]] = 4  # auto: the largest that fits (probed on the GPU)
    mix_group: int = 4  # mixup/cutmix partners are drawn inside groups of this many clips (the reference's per-GPU batch)
    lr_clock_gpus: Optional[int] = None  # the LR schedule counts iterations of this many GPUs ... (docs/design.md)
    lr_clock_gpu_batch: Optional[int] = None  # ... of this many clips each; None: one iteration per optimizer step
    lr: float = 8e-6
    warmup_epochs: float = 5
    min_lr_ratio: float = 0.01
    weight_decay: float = 0.001
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    mixup: float = 0.8
    cutmix: float = 1.0
    mix_switch_prob: float = 0.5
    label_smoothing: float = 0.1
    color_jitter: float = 0.8
    grayscale: float = 0.2
    seed: int = 1024
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    eval_every: int = 1  # epochs; the last epoch is always evaluated
    log_every: int = 10  # optimizer steps
    save_every: int = 0  # optimizer steps between mid-epoch checkpoints (0: at each epoch end only)
    keep_last: int = 2
    compile: Union[bool, Literal["auto"]] = "auto"  # torch.compile the video head and augmentation; auto: on CUDA
    # activation checkpointing of the image tower: true = every block, N = the first N blocks (the text tower, run
    # once per step, is never checkpointed): less memory for some speed (docs/performance.md)
    checkpointing: Union[bool, int] = False

    @model_validator(mode="after")
    def _check_batches(self):
        if self.global_batch <= 0 or (self.micro_batch != "auto" and self.micro_batch <= 0):
            raise ValueError("train.global_batch and train.micro_batch must be positive")
        if self.epochs <= 0:
            raise ValueError("train.epochs must be positive")
        if self.mix_group <= 0:
            raise ValueError("train.mix_group must be positive")
        mixing = self.mixup > 0 or self.cutmix > 0
        if mixing and self.micro_batch != "auto" and self.micro_batch % self.mix_group:
            raise ValueError(f"train.micro_batch {self.micro_batch} must be a multiple of train.mix_group "
                             f"{self.mix_group} (mixup pairs clips inside groups of that size); choose such a "
                             "micro-batch or lower train.mix_group")
        if (self.lr_clock_gpus is None) != (self.lr_clock_gpu_batch is None):
            raise ValueError("train.lr_clock_gpus and train.lr_clock_gpu_batch go together: set both or neither")
        if self.lr_clock_gpus is not None:
            if self.lr_clock_gpus <= 0 or self.lr_clock_gpu_batch <= 0:
                raise ValueError("train.lr_clock_gpus and train.lr_clock_gpu_batch must be positive")
            if self.global_batch % (self.lr_clock_gpus * self.lr_clock_gpu_batch):
                raise ValueError(f"train.global_batch {self.global_batch} is not a multiple of lr_clock_gpus × "
                                 f"lr_clock_gpu_batch ({self.lr_clock_gpus} × {self.lr_clock_gpu_batch})")
        if not isinstance(self.checkpointing, bool) and self.checkpointing < 0:
            raise ValueError("train.checkpointing must be true, false or a number of image-tower blocks ≥ 0")
        return self


class EvalConfig(_Section):
    batch: int = 8
    clips: int = 1
    crops: int = 1  # 1 = centre crop at short side 256/224*input; 3 = three crops at short side = input
    reference_multiclip: bool = False  # k>1 clips drawn with the training formula, as the reference code does
    skip_undecodable: bool = False  # score the decodable videos only (else any failure stops the evaluation)
    final_clips: Optional[int] = None  # views of the evaluation after the last epoch (default: clips/crops)
    final_crops: Optional[int] = None


class RunConfig(_Section):
    name: str = "run"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()


def recipe_names() -> list[str]:
    folder = resources.files("vifi") / "recipes"
    # Names starting with "_" hold shared values for other recipes to inherit, not runs of their own.
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir()
                  if p.name.endswith(".yaml") and not p.name.startswith("_"))


def _read_yaml(path_or_name: str, _depth: int = 0) -> dict[str, Any]:
    path = Path(path_or_name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise VifiError(f"config file not found: {path}; give a recipe name ({', '.join(recipe_names())}) or a YAML path")
        text = path.read_text(encoding="utf-8")
        where = str(path)
    else:
        res = resources.files("vifi") / "recipes" / f"{path_or_name}.yaml"
        if not res.is_file():
            raise VifiError(f"unknown recipe '{path_or_name}'; known recipes: {', '.join(recipe_names())}, or give a YAML path")
        text = res.read_text(encoding="utf-8")
        where = f"recipe {path_or_name}"
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise VifiError(f"malformed YAML in {where}{line}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise VifiError(f"{where} must hold a mapping of sections (data, model, train, eval), not {type(data).__name__}")
    parent = data.pop("base", None)
    if parent is not None:
        if _depth >= 8:
            raise VifiError(f"{where}: recipe 'base' chain is too deep (a cycle?)")
        parent = str(parent)
        if where != f"recipe {path_or_name}" and parent.endswith((".yaml", ".yml")) and not Path(parent).is_absolute():
            parent = str(Path(path_or_name).parent / parent)  # a file's parent is relative to that file
        data = _merge(_read_yaml(parent, _depth + 1), data)
    return data


def _merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Child keys override the parent's, section by section."""
    merged = dict(parent)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise VifiError(f"--set {dotted}: '{key}' is a value, not a section")
        node = child
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`train.lr=1e-5` -> ("train.lr", 1e-5); the value is parsed as YAML so numbers, bools and lists work."""
    if "=" not in text:
        raise VifiError(f"--set '{text}' must look like section.key=value, e.g. --set train.lr=1e-5")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise VifiError(f"--set '{text}': empty key; use section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    # YAML reads 1e-5 as a string (no dot); numbers are what users mean.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            pass
    return key, value


def load_config(recipe: str, overrides: list[str] | None = None) -> RunConfig:
    tree = _read_yaml(recipe)
    for item in overrides or []:
        key, value = parse_override(item)
        _set_dotted(tree, key, value)
    return validate_config(tree, where=recipe)


def validate_config(tree: dict[str, Any], where: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            raise VifiError(f"unknown config key '{loc}' in {where}; see `vifi config show` for the valid keys") from None
        got = err.get("input")
        raise VifiError(f"bad value for '{loc or 'config'}' in {where}: {err['msg']} (got {got!r})") from None


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)

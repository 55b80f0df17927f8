"""Typed run configuration: YAML recipe in, `--set section.key=value` overrides, resolved YAML out.

Unknown keys and wrong types are user errors (VifiError with the offending key), never silent defaults.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vifi.errors import VifiError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    train_list: Optional[str] = None  # `relative/path label` per line
    val_list: Optional[str] = None
    labels: Optional[str] = None  # `id,name` CSV, class index = row order
    root: Optional[str] = None  # folder the list paths are relative to
    frames: int = Field(32, ge=1)
    input_size: int = Field(224, ge=1)
    # auto: the CPU cores available to each process (docs/performance.md)
    num_workers: Union[Annotated[int, Field(ge=0)], Literal["auto"]] = "auto"
    # nvjpeg / nvdec: training clips decoded on the GPU (vifi/data/device_decode.py); evaluation decodes with decord
    backend: Literal["decord", "pyav", "torchcodec", "nvjpeg", "nvdec"] = "decord"
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
        # What a run would refuse later is refused here, so `config show` validates exactly as a run does.
        if self.train == "frozen":
            raise ValueError("model.train=frozen leaves nothing to train; use `vifi eval` for a frozen model")
        if self.train != "prompt" and not self.vanilla and "{}" not in self.prompt_template:
            raise ValueError(f"model.prompt_template {self.prompt_template!r} must contain '{{}}' where the class "
                             "name goes")
        if not _known_arch(self.arch):
            raise ValueError(f"unknown architecture '{self.arch}'; use 'tiny' or an open_clip name such as ViT-B-16")
        return self


def _known_arch(arch: str) -> bool:
    """"tiny", a Hub name (checked when fetched) or an open_clip model config; read from open_clip's config folder
    without importing it (and torch), so that `config show` stays model-free (vifi/model/backbone.py builds it)."""
    import importlib.util

    if arch == "tiny" or arch.startswith("hf-hub:"):
        return True
    spec = importlib.util.find_spec("open_clip")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    configs = [Path(f) / "model_configs" for f in folders if (Path(f) / "model_configs").is_dir()]
    return not configs or any((c / f"{arch}.json").is_file() for c in configs)


class TrainConfig(_Section):
    # Bounds are part of the type: a value the engine cannot run is refused before any work, naming the key.
    epochs: int = 10
    global_batch: int = 256
    micro_batch: Union[int, Literal["auto"]] = 4  # auto: the largest that fits (probed on the GPU)
    mix_group: int = Field(4, ge=1)  # mixup/cutmix partners are drawn inside groups of this many clips (the reference's per-GPU batch)
    lr_clock_gpus: Optional[Annotated[int, Field(ge=1)]] = None  # the LR schedule counts iterations of this many GPUs ... (docs/design.md)
    lr_clock_gpu_batch: Optional[Annotated[int, Field(ge=1)]] = None  # ... of this many clips each; None: one iteration per optimizer step
    lr: float = Field(8e-6, ge=0, allow_inf_nan=False)  # 0: weights stay as loaded (an untrained baseline run)
    warmup_epochs: float = Field(5, ge=0, allow_inf_nan=False)
    min_lr_ratio: float = Field(0.01, ge=0, le=1)
    weight_decay: float = Field(0.001, ge=0, allow_inf_nan=False)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.98)
    eps: float = Field(1e-8, gt=0, allow_inf_nan=False)
    mixup: float = Field(0.8, ge=0, le=1)  # Beta(α, α) of mixup, 0 = off; > 1 is refused (docs/reliability.md)
    cutmix: float = Field(1.0, ge=0, le=1)
    mix_switch_prob: float = Field(0.5, ge=0, le=1)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    color_jitter: float = Field(0.8, ge=0, le=1)
    grayscale: float = Field(0.2, ge=0, le=1)
    seed: int = Field(1024, ge=0)
    # fp8: torchao float8 training of the image tower's linear layers (opt-in; CUDA + torchao; docs/performance.md)
    precision: Literal["auto", "bf16", "fp16", "fp32", "fp8"] = "auto"
    eval_every: int = Field(1, ge=1)  # epochs; the last epoch is always evaluated
    log_every: int = Field(10, ge=1)  # optimizer steps
    save_every: int = Field(0, ge=0)  # optimizer steps between mid-epoch checkpoints (0: at each epoch end only)
    keep_last: int = Field(2, ge=1)
    compile: Union[bool, Literal["auto"]] = "auto"  # torch.compile the video head and augmentation; auto: on CUDA
    compile_mode: Literal["default", "max-autotune-no-cudagraphs", "max-autotune"] = "default"  # torch.compile mode
    # SDPA kernel family of the attention (vifi/model/attention.py); mha: open_clip's nn.MultiheadAttention path
    attention: Literal["auto", "flash", "efficient", "cudnn", "math", "mha"] = "auto"
    # activation checkpointing of the image tower: true = every block, N = the first N blocks (the text tower, run
    # once per step, is never checkpointed): less memory for some speed (docs/performance.md); auto: the fewest
    # blocks that the memory estimate (vifi/model/memory.py) says fit this GPU; none on CPU
    checkpointing: Union[bool, int, Literal["auto"]] = False
    report_to: list[Literal["tensorboard", "wandb"]] = []  # trackers beside log.csv (vifi/engine/tracking.py)

    @field_validator("checkpointing", mode="before")
    @classmethod
    def _checkpointing(cls, value):
        # A union's own error lists only its first member ("a valid boolean"); name every accepted form instead.
        if isinstance(value, bool) or value == "auto" or (isinstance(value, int) and value >= 0):
            return value
        raise ValueError("train.checkpointing must be true, false, auto or a number of image-tower blocks ≥ 0")

    @field_validator("report_to", mode="before")
    @classmethod
    def _report_to(cls, value):
        from vifi.engine.tracking import parse_report_to

        return parse_report_to(value)

    @model_validator(mode="after")
    def _check_batches(self):
        if self.global_batch <= 0 or (self.micro_batch != "auto" and self.micro_batch <= 0):
            raise ValueError("train.global_batch and train.micro_batch must be positive")
        if self.epochs <= 0:
            raise ValueError("train.epochs must be positive")
        if self.mix_group <= 0:
            raise ValueError("train.mix_group must be positive")
        if self.micro_batch != "auto" and self.global_batch % self.micro_batch:
            raise ValueError(f"train.global_batch {self.global_batch} is not a multiple of train.micro_batch "
                             f"{self.micro_batch}; choose a micro-batch that divides it")
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
        return self


class EvalConfig(_Section):
    batch: int = Field(8, ge=1)
    clips: int = Field(1, ge=1)
    crops: Literal[1, 3] = 1  # 1 = centre crop at short side 256/224*input; 3 = three crops at short side = input
    reference_multiclip: bool = False  # k>1 clips drawn with the training formula, as the reference code does
    skip_undecodable: bool = False  # score the decodable videos only (else any failure stops the evaluation)
    final_clips: Optional[Annotated[int, Field(ge=1)]] = None  # views after the last epoch (default: clips/crops)
    final_crops: Optional[Literal[1, 3]] = None


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
    # Only a .yaml/.yml name is a file: a folder or file called like a recipe (e.g. `--out demo`) must not hide it.
    if path.suffix in (".yaml", ".yml"):
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


def load_config(recipe: str, overrides: list[str] | None = None, values: dict[str, Any] | None = None) -> RunConfig:
    """Recipe, then `--set` strings (parsed as YAML), then typed flag values (set as given, never parsed)."""
    return apply_overrides(_read_yaml(recipe), overrides, values, where=recipe)


def apply_overrides(tree: dict[str, Any], overrides: list[str] | None, values: dict[str, Any] | None,
                    where: str) -> RunConfig:
    for item in overrides or []:
        key, value = parse_override(item)
        _set_dotted(tree, key, value)
    for key, value in (values or {}).items():
        if value is not None:
            _set_dotted(tree, key, value)
    return validate_config(tree, where=where)


def flatten(cfg: RunConfig) -> dict[str, Any]:
    """{"train.lr": 1e-5, "model.prompt.text_depth": 0, ...}: the dotted keys `--set` takes."""
    out: dict[str, Any] = {}

    def walk(prefix: str, node: dict[str, Any]) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(f"{prefix}{key}.", value)
            else:
                out[f"{prefix}{key}"] = value

    walk("", cfg.model_dump(mode="json"))
    return out


class CliValues(BaseModel):
    """Bounds and choices of the eval / zeroshot flags that are not config keys; each error names the flag."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    frames: Optional[Annotated[int, Field(ge=1)]] = Field(None, alias="--frames")
    batch: Optional[Annotated[int, Field(ge=1)]] = Field(None, alias="--batch")
    workers: Optional[Annotated[int, Field(ge=0)]] = Field(None, alias="--workers")
    device: Optional[Annotated[str, Field(pattern=r"^(cpu|cuda(:\d+)?)$")]] = Field(None, alias="--device")
    template: Optional[str] = Field(None, alias="--template")

    @model_validator(mode="after")
    def _one_slot(self):
        if self.template is not None and self.template.count("{}") != 1:
            raise ValueError(f"--template {self.template!r} must contain exactly one '{{}}' where the label goes, "
                             "e.g. 'a video of {}.'")
        return self


def check_cli_values(**flags: Any) -> None:
    """check_cli_values(frames=..., batch=..., device=...): one VifiError naming the first bad flag."""
    try:
        CliValues(**flags)
    except ValidationError as exc:
        err = exc.errors()[0]
        if not err["loc"]:
            raise VifiError(err["msg"].removeprefix("Value error, ")) from None
        field = CliValues.model_fields[str(err["loc"][0])]
        name = field.alias or f"--{err['loc'][0]}"
        msg = "use cpu, cuda or cuda:N" if "pattern" in err["type"] else err["msg"]
        raise VifiError(f"{name} {err.get('input')!r}: {msg}") from None


def validate_config(tree: dict[str, Any], where: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = _config_key(err["loc"])
        if err["type"] == "extra_forbidden":
            raise VifiError(f"unknown config key '{loc}' in {where}; see `vifi config show` for the valid keys") from None
        got = err.get("input")
        # A section's own check names its keys in the message; its input (the whole section) would only clutter.
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        msg = err["msg"].removeprefix("Value error, ")
        raise VifiError(f"bad value for '{loc or 'config'}' in {where}: {msg}{shown}") from None


def _config_key(loc: tuple) -> str:
    """The dotted config key of a pydantic error location, without the union-member tags pydantic adds
    (`data.num_workers.constrained-int` -> `data.num_workers`)."""
    model, parts = RunConfig, []
    for part in loc:
        fields = getattr(model, "model_fields", None) if model is not None else None
        if fields is not None and part in fields:
            parts.append(str(part))
            ann = fields[part].annotation
            model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        elif isinstance(part, int) or fields is not None:  # a tuple index (train.betas.0) or an unknown key
            parts.append(str(part))
            model = None
    return ".".join(parts)


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)

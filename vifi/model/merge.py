"""Weight-space ensembling (WiSE-FT): θ(α) = (1 − α)·θ_A + α·θ_B for every CLIP tensor of two models of one
architecture, A typically zero-shot CLIP and B a model fine-tuned from it (docs/design.md, "Weight-space ensembling").

Used by `vifi merge` (writes θ(α) as a checkpoint) and `vifi eval --wise-ft` (evaluates θ(α) in memory).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from vifi.errors import VifiError
from vifi.model.facts import CheckpointFacts, notice

SideKind = Literal["checkpoint", "clip", "any"]


# ---- α ---------------------------------------------------------------------------------------------------------
def check_alpha(alpha: float, where: str) -> float:
    """α in [0, 1]: the interpolation WiSE-FT evaluates; outside it the weights leave the segment between the two
    trained models (extrapolation), which vifi does not offer (docs/design.md). `where`: the flag and its value."""
    if not math.isfinite(alpha) or not 0.0 <= alpha <= 1.0:
        raise VifiError(f"{where}: α {alpha:g} is outside [0, 1] (0 = model A, 1 = model B)")
    return float(alpha)


def parse_alphas(text: str, flag: str = "--wise-ft") -> list[float]:
    """"0,0.25,1" -> [0.0, 0.25, 1.0], in the order given; numbers in [0, 1], each once."""
    alphas = []
    for item in text.split(","):
        item = item.strip()
        try:
            alpha = float(item)
        except ValueError:
            raise VifiError(f"{flag} {text!r}: {item!r} is not a number; give α values in [0, 1] separated by "
                            "commas, e.g. 0,0.5,1") from None
        alpha = check_alpha(alpha, f"{flag} {text!r}")
        if alpha in alphas:
            raise VifiError(f"{flag} {text!r}: α {alpha:g} is given twice")
        alphas.append(alpha)
    return alphas


def alpha_label(alpha: float) -> str:
    """Shortest text that reads back as `alpha` (0, 0.25, 1): the name of its output folder `alpha-<label>`."""
    from vifi.results import shortest_float

    return shortest_float(alpha)


# ---- the two ends --------------------------------------------------------------------------------------------
@dataclass
class Side:
    model: torch.nn.Module  # ViFiCLIP, frozen
    facts: CheckpointFacts
    source: str  # the resolved file (absolute), or the open_clip tag / hf-hub name
    sha256: str | None  # of that file; None for a tag or hub name (the name identifies the weights)


def load_side(spec: str, role: str, *, kind: SideKind = "any", clip: str | None = None,
              arch: str = "ViT-B-16") -> Side:
    """One end of an ensemble: anything `vifi eval` loads as a full model.

    `kind`: "checkpoint" (a vifi checkpoint, run folder or paper .pth + `clip`), "clip" (plain CLIP weights: local
    file, open_clip tag of `arch`, hf-hub:ORG/NAME), or "any": a checkpoint when `spec` is one, else CLIP weights.
    Prompt artifacts are refused: their prompts are parameters the other end lacks, not weights to interpolate.
    """
    from vifi.fileio import sha256_file

    path = Path(spec)
    if kind == "checkpoint" or (kind == "any" and _is_checkpoint(path)):
        from vifi.model.checkpoint import build_from_checkpoint, is_safetensors, read_facts, resolve_checkpoint

        resolved = resolve_checkpoint(path)
        prompts = is_safetensors(resolved) and read_facts(resolved).train_mode == "prompt"  # before loading its base
        model, facts = (None, None) if prompts else build_from_checkpoint(resolved, clip=clip)
        if prompts or model.prompts is not None:
            raise VifiError(f"{role} {spec} holds deep prompts, which are not CLIP weights and have no counterpart "
                            "to interpolate with; ensemble the fine-tuned model they were learned on (their base, "
                            "the bridge; `vifi export` writes a paper release's base as its own file) instead")
        return Side(model, facts, str(resolved.resolve()), sha256_file(resolved))
    from vifi.model.backbone import load_clip
    from vifi.model.facts import plain_clip
    from vifi.model.vifi_clip import ViFiCLIP

    module, arch_cfg = load_clip(arch, spec)
    local = path.is_file()
    return Side(ViFiCLIP(module, arch_cfg, "frozen"), plain_clip(arch_cfg),
                str(path.resolve()) if local else spec, sha256_file(path) if local else None)


def check_side_exists(spec: str, role: str, arch: str = "ViT-B-16") -> None:
    """Before any work: a model named by a path must be there, and anything else must be an open_clip tag of
    `arch` (named by `role` in the error, not by --clip) or an hf-hub name (which loading checks)."""
    from vifi.model.backbone import HF_HUB

    looks_like_path = "/" in spec or "\\" in spec or Path(spec).suffix in (".pt", ".pth", ".bin", ".safetensors")
    if spec.startswith(HF_HUB) or Path(spec).exists():
        return
    if looks_like_path:
        raise VifiError(f"{role} {spec}: not found; give a vifi checkpoint, run folder, paper .pth or CLIP weights "
                        "file, an open_clip tag (e.g. openai) or hf-hub:ORG/NAME")
    from vifi.model.pretrained import tag_config

    tag_config(arch, spec, flag=role)


def _is_checkpoint(path: Path) -> bool:
    """A run folder, a vifi safetensors checkpoint or a paper .pth release; anything else is CLIP weights."""
    if path.is_dir():
        return True
    if not path.is_file():
        return False  # an open_clip tag or hf-hub name
    from vifi.model.checkpoint import FORMAT, PROMPT_FORMAT, is_safetensors, read_metadata

    if is_safetensors(path):
        return read_metadata(path).get("format") in (FORMAT, PROMPT_FORMAT)
    return _is_paper_release(path)


def _is_paper_release(path: Path) -> bool:
    """Whether a torch file holds the reference's model (image_encoder.* keys), without loading its tensors: the
    key names sit in the archive's pickle, which is read as bytes here and never unpickled."""
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("data.pkl") and "/code/" not in n]
            return any(b"image_encoder." in archive.read(n) for n in pickles)
    from vifi.model.paper_import import is_paper_checkpoint, safe_torch_load

    return is_paper_checkpoint(safe_torch_load(path))  # torch's legacy (pre-1.6) format: read it safely


def check_compatible(a: Side, b: Side) -> None:
    """Same tensors (names and shapes) and the same architecture (activation, heads: what shapes do not show)."""
    own_a, own_b = a.model.clip.state_dict(), b.model.clip.state_dict()
    what = f"A ({a.source}) and B ({b.source}) are different architectures"
    for key, value in own_b.items():
        if key not in own_a:
            raise VifiError(f"{what}: A has no tensor '{key}'")
        if own_a[key].shape != value.shape:
            raise VifiError(f"{what}: '{key}' is {tuple(own_a[key].shape)} in A and {tuple(value.shape)} in B")
    extra = sorted(set(own_a) - set(own_b))
    if extra:
        raise VifiError(f"{what}: B has no tensor '{extra[0]}'")
    difference = _arch_difference(a.facts.arch, b.facts.arch)
    if difference:
        raise VifiError(f"{what}: same tensor shapes but {difference}")


def _arch_difference(a: dict, b: dict) -> str | None:
    """The first setting in which two architecture dicts build different models (open_clip's defaults filled in,
    so `head_width: 64` written out equals it left out)."""
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    for key, cfg_type in (("vision_cfg", CLIPVisionCfg), ("text_cfg", CLIPTextCfg)):
        ours, theirs = dataclasses.asdict(cfg_type(**a[key])), dataclasses.asdict(cfg_type(**b[key]))
        for name in ours:
            if ours[name] != theirs[name]:
                return f"{key}.{name} is {ours[name]!r} in A and {theirs[name]!r} in B"
    if a["embed_dim"] != b["embed_dim"]:
        return f"embed_dim is {a['embed_dim']} in A and {b['embed_dim']} in B"
    if bool(a.get("quick_gelu")) != bool(b.get("quick_gelu")):
        return f"quick_gelu is {bool(a.get('quick_gelu'))} in A and {bool(b.get('quick_gelu'))} in B (activation)"
    return None


# ---- the interpolation -----------------------------------------------------------------------------------------
def interpolate(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1 − α)·a + α·b in float32: a exactly at α = 0 and b at α = 1 (×1 and +0 are exact), and at α = 0.5 the
    exact mean rounded once (×0.5 is exact). Not a + α·(b − a), which misses b in the last bit at α = 1, nor
    torch.lerp, which switches to b − (1 − α)·(b − a) from α = 0.5 on and so is not the rounded mean there."""
    return (1.0 - alpha) * a.float() + alpha * b.float()


class WeightEnsemble:
    """B's model whose CLIP weights are set to θ(α) on demand: both ends loaded once, any number of α evaluated.

    A's model is only read (it stays where it was loaded, and may serve several ensembles, e.g. one per seed);
    B's weights are copied to the host first, since `set_alpha` overwrites B's model in place.
    """

    def __init__(self, a: Side, b: Side):
        check_compatible(a, b)
        self.a, self.b = a, b
        self.model = b.model
        self._state_a = {k: v.detach() for k, v in a.model.clip.state_dict().items()}
        self._state_b = {k: v.detach().to("cpu", copy=True) for k, v in b.model.clip.state_dict().items()}

    @torch.no_grad()
    def set_alpha(self, alpha: float) -> torch.nn.Module:
        for key, target in self.model.clip.state_dict().items():
            a, b = self._state_a[key].to(target.device), self._state_b[key].to(target.device)
            target.copy_(interpolate(a, b, alpha))
        return self.model

    def describe(self, alpha: float) -> str:
        return f"WiSE-FT alpha {alpha:g}: (1 - alpha) * A + alpha * B, A = {self.a.source}, B = {self.b.source}"


# ---- what a merged checkpoint says about itself -------------------------------------------------------------
def merged_facts(a: Side, b: Side, alpha: float) -> CheckpointFacts:
    """B's facts (B is the fine-tuned end: its frames, input size, template, class names, train mode) plus where
    the weights came from; one notice when A was trained with other inputs."""
    if a.facts.is_checkpoint:
        differ = [f"{what} {ours!r} (B) vs {theirs!r} (A)" for what, ours, theirs in (
            ("frames", b.facts.frames, a.facts.frames), ("input size", b.facts.input_size, a.facts.input_size),
            ("template", b.facts.template, a.facts.template)) if ours != theirs]
        if differ:
            notice(f"A and B were trained with different inputs ({'; '.join(differ)}); B's are kept")
    return dataclasses.replace(b.facts, path=None, source=None, merged_from={
        "alpha": alpha, "a": a.source, "a_sha256": a.sha256, "b": b.source, "b_sha256": b.sha256})

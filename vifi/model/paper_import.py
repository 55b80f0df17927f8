"""Read the paper's released `.pth` checkpoints without running any code from them (SPEC §3.7, §8).

The files are `torch.save` dicts whose `config` is a pickled yacs CfgNode, so `weights_only=True` refuses them and
`weights_only=False` would execute whatever the pickle names. We unpickle with an allow-list instead: tensor
rebuild helpers and plain containers resolve to the real thing; the yacs config becomes an inert dict record;
any other global (os.system, builtins.eval, a class with side effects, ...) stops the load before it is called.

Key mapping onto open_clip's CLIP (after stripping DDP's `module.`):
  image_encoder.*                      -> visual.*
  text_encoder.{transformer,positional_embedding,ln_final,text_projection}* -> same names at the top level
  logit_scale                          -> logit_scale
  prompt_learner.{token_prefix,token_suffix,complete_text_embeddings} -> dropped (class-specific, rebuilt)
  prompt_learner.ctx, image_encoder.VPT, *.resblocks.{i}.VPT_shallow -> the prompt tensors (vifi.model.prompts)
The token-embedding table is not in these files (the reference never trains it): it comes from CLIP's weights.
The pickled config says what the model was trained with (frames, input size, architecture, train mode, CTX_INIT,
prompt sizes): `paper_facts` turns it into the checkpoint's facts (vifi.model.facts).
"""

from __future__ import annotations

import pickle
import re
import types
from dataclasses import replace
from pathlib import Path

import torch

from vifi.errors import VifiError
from vifi.model.facts import DEFAULT_FRAMES, CheckpointFacts

_DROPPED = ("prompt_learner.token_prefix", "prompt_learner.token_suffix", "prompt_learner.complete_text_embeddings")
_TEXT_TOP = ("transformer.", "positional_embedding", "ln_final.", "text_projection")


class ConfigRecord(dict):
    """Stands in for yacs' CfgNode: keeps the items and attributes, has no behaviour."""

    def __setstate__(self, state):
        self.__dict__.update(state if isinstance(state, dict) else {"state": state})


_ALLOWED = {
    ("collections", "OrderedDict"): lambda: __import__("collections").OrderedDict,
    ("torch._utils", "_rebuild_tensor"): lambda: torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): lambda: torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): lambda: torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): lambda: torch._utils._rebuild_parameter_with_state,
    ("torch", "Size"): lambda: torch.Size,
    ("torch", "device"): lambda: torch.device,
    ("builtins", "set"): lambda: set,
    ("builtins", "frozenset"): lambda: frozenset,
    ("builtins", "slice"): lambda: slice,
    ("yacs.config", "CfgNode"): lambda: ConfigRecord,
}


class RefusedPickle(VifiError):
    pass


class _SafeUnpickler(pickle.Unpickler):
    source = "checkpoint"

    def find_class(self, module, name):
        maker = _ALLOWED.get((module, name))
        if maker is not None:
            return maker()
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise RefusedPickle(f"refusing {self.source}: its pickle references {module}.{name}, which loading would "
                            "call; vifi only reads tensors and the reference's config (nothing was run)")


def _safe_pickle_module(source: str) -> types.ModuleType:
    module = types.ModuleType("vifi_safe_pickle")

    class Unpickler(_SafeUnpickler):
        pass

    Unpickler.source = source
    module.Unpickler = Unpickler
    module.load = lambda fh, **kw: Unpickler(fh, **kw).load()
    module.__name__ = "vifi_safe_pickle"
    return module


def safe_torch_load(path: str | Path):
    """torch.load of a trusted-format file through the allow-list unpickler above."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=False,
                          pickle_module=_safe_pickle_module(str(path)))
    except RefusedPickle:
        raise
    except Exception:  # noqa: BLE001 - a damaged or foreign file is a user error
        # The unpickler's own words ("invalid load key, '\xf2'", "Memo value not found") say nothing to a user.
        raise VifiError(f"cannot read {path}: it is not a PyTorch or safetensors checkpoint (another kind of file, "
                        "or a damaged or truncated one); give a vifi checkpoint or run folder, a paper .pth or "
                        "CLIP weights") from None


def is_paper_checkpoint(obj) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("model"), dict) and any(
        k.removeprefix("module.").startswith(("image_encoder.", "text_encoder.")) for k in obj["model"])


def map_paper_state(model_state: dict[str, torch.Tensor], path: str | Path):
    """(open_clip CLIP state without token_embedding, prompt tensors in vifi names, prompt sizes or None)."""
    clip, prompts, unexpected = {}, {}, []
    v_deep, t_deep = {}, {}
    for key, value in model_state.items():
        key = key.removeprefix("module.")
        if key in _DROPPED:
            continue
        if m := re.fullmatch(r"image_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow", key):
            v_deep[int(m.group(1))] = value
        elif m := re.fullmatch(r"text_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow", key):
            t_deep[int(m.group(1))] = value
        elif key == "image_encoder.VPT":
            prompts["vision.tokens"] = value
        elif key == "prompt_learner.ctx":
            prompts["text.tokens"] = value
        elif key.startswith("image_encoder."):
            clip["visual." + key.removeprefix("image_encoder.")] = value
        elif key.startswith("text_encoder.") and key.removeprefix("text_encoder.").startswith(_TEXT_TOP):
            clip[key.removeprefix("text_encoder.")] = value
        elif key == "logit_scale":
            clip[key] = value
        else:
            unexpected.append(key)
    if unexpected:
        raise VifiError(f"{path} is not a ViFi-CLIP checkpoint: unexpected keys {', '.join(unexpected[:4])}"
                        f"{' …' if len(unexpected) > 4 else ''} (an X-CLIP-style model with extra modules?)")
    sizes = None
    if prompts or v_deep or t_deep:
        for i, (table, tower) in enumerate(((v_deep, "vision"), (t_deep, "text"))):
            if sorted(table) != list(range(1, len(table) + 1)):
                raise VifiError(f"{path}: {tower} deep prompts at blocks {sorted(table)} are not blocks 1..D-1")
            for j, block in enumerate(sorted(table)):
                prompts[f"{tower}.deep.{j}"] = table[block]
        v, t = prompts.get("vision.tokens"), prompts.get("text.tokens")
        sizes = {"vision_tokens": 0 if v is None else v.shape[0], "vision_depth": 0 if v is None else 1 + len(v_deep),
                 "text_tokens": 0 if t is None else t.shape[0], "text_depth": 0 if t is None else 1 + len(t_deep)}
    return clip, prompts, sizes


# The reference's config keys vifi reads (docs/design.md, "Paper checkpoints"), and what a missing key means. Every
# release pickles its whole merged config, so all keys are present in practice; the fallbacks are vifi's defaults.
_FRAMES, _INPUT_SIZE, _ARCH = ("DATA", "NUM_FRAMES"), ("DATA", "INPUT_SIZE"), ("MODEL", "ARCH")
_TRAINER = ("TRAINER", "ViFi_CLIP")
_PAPER_DEFAULT_INIT = "a photo of a"


def _config_value(config, keys: tuple[str, ...], default):
    node = config
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def _config_int(config, keys: tuple[str, ...], default: int, path) -> int:
    value = _config_value(config, keys, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise VifiError(f"{path}: its config's {'.'.join(keys)} is {value!r}, not a count; the file is damaged")
    return value


def _config_str(config, keys: tuple[str, ...], default: str, path) -> str:
    value = _config_value(config, keys, default)
    if not isinstance(value, str):
        raise VifiError(f"{path}: its config's {'.'.join(keys)} is {value!r}, not text; the file is damaged")
    return value


def finetune_template(ctx_init: str) -> str:
    """The fine-tuned models' class text: `"<CTX_INIT> <name>."`, '_' read as a space in CTX_INIT only
    (docs/design.md)."""
    prefix = ctx_init.replace("_", " ").strip()
    return f"{prefix} {{}}." if prefix else "{}."


def _arch_name(config, arch: dict, path) -> str | None:
    """MODEL.ARCH as an open_clip name ("ViT-B/16" -> "ViT-B-16"), checked against the shapes of the weights."""
    from vifi.model.backbone import arch_config

    named = _config_str(config, _ARCH, "", path)
    if not named:
        return None
    name = named.replace("/", "-")
    try:
        expected = arch_config(name)
    except VifiError:
        raise VifiError(f"{path}: its config names the architecture {named!r}, which open_clip does not know; "
                        "vifi reads ViT CLIP releases (e.g. ViT-B/16)") from None
    dims = [("vision_cfg", "image_size"), ("vision_cfg", "patch_size"), ("vision_cfg", "width"),
            ("vision_cfg", "layers"), ("text_cfg", "width"), ("text_cfg", "layers")]
    for tower, key in dims:
        if expected[tower].get(key) != arch[tower][key]:
            raise VifiError(f"{path}: its config names {named} but its weights have {tower.split('_')[0]} {key} "
                            f"{arch[tower][key]} ({named}: {expected[tower].get(key)}); the file is inconsistent")
    return name


def paper_facts(config, arch: dict, sizes: dict | None, path) -> CheckpointFacts:
    """What a release's pickled config (a plain dict after the safe unpickler) says about its model.

    NUM_FRAMES, INPUT_SIZE and MODEL.ARCH become the defaults of every command; USE (or PROMPT_MODEL) is the train
    mode; CTX_INIT gives the class text and, for n_t <= 4, the prompt init; prompt sizes must match the tensors.
    """
    from vifi.config import PromptConfig
    from vifi.model.prompts import Prompts

    if config is not None and not isinstance(config, dict):
        raise VifiError(f"{path}: its 'config' is a {type(config).__name__}, not the reference's yacs config")
    frames = _config_int(config, _FRAMES, DEFAULT_FRAMES, path)
    input_size = _config_int(config, _INPUT_SIZE, arch["vision_cfg"]["image_size"], path)
    if frames < 1:
        raise VifiError(f"{path}: its config's DATA.NUM_FRAMES is 0; the file is damaged")
    if input_size != arch["vision_cfg"]["image_size"]:
        raise VifiError(f"{path}: its config's DATA.INPUT_SIZE is {input_size} but its weights take "
                        f"{arch['vision_cfg']['image_size']}-pixel images; the file is inconsistent")
    ctx_init = _config_str(config, _TRAINER + ("CTX_INIT",), _PAPER_DEFAULT_INIT, path)
    use = _config_str(config, _TRAINER + ("USE",), "both", path)
    if use not in ("both", "image", "text"):
        raise VifiError(f"{path}: its config's TRAINER.ViFi_CLIP.USE is {use!r}; expected both, image or text")
    if _config_value(config, _TRAINER + ("PROMPT_MODEL",), False) is True and not sizes:
        raise VifiError(f"{path}: its config says TRAINER.ViFi_CLIP.PROMPT_MODEL but it holds no prompt tensors; "
                        "the file is damaged")
    prompt = None
    if sizes:
        prompt = PromptConfig(init=ctx_init, **sizes)
        _check_prompt_sizes(config, sizes, path)
    return CheckpointFacts(
        arch=arch, train_mode="prompt" if prompt is not None else use, frames=frames, input_size=input_size,
        template=Prompts.template_for(prompt) if prompt is not None else finetune_template(ctx_init),
        prompt=prompt, arch_name=_arch_name(config, arch, path), path=str(path))


def _check_prompt_sizes(config, sizes: dict, path) -> None:
    """The tensors are what loads; a config that says otherwise means a damaged or hand-edited file."""
    if config is None:
        return
    for tower, n_key, d_key in (("vision", "N_CTX_VISION", "PROMPT_DEPTH_VISION"),
                                ("text", "N_CTX_TEXT", "PROMPT_DEPTH_TEXT")):
        n = _config_int(config, _TRAINER + (n_key,), sizes[f"{tower}_tokens"], path)
        d = _config_int(config, _TRAINER + (d_key,), sizes[f"{tower}_depth"], path)
        said = (n, d) if n and d else (0, 0)  # zero tokens or zero depth: no prompts in that tower
        held = (sizes[f"{tower}_tokens"], sizes[f"{tower}_depth"])
        if said != held:
            raise VifiError(f"{path}: its config says {tower} prompts {n_key}={n}, {d_key}={d} but it holds "
                            f"{held[0]} tokens in {held[1]} blocks; the file is inconsistent")


def load_paper_checkpoint(path: str | Path, clip_weights: str | None):
    """(ViFiCLIP with prompts when the file has them, its CheckpointFacts) from a paper `.pth` and CLIP's token
    table."""
    from vifi.model.backbone import clip_from_state_dict, read_weight_file
    from vifi.model.prompts import Prompts
    from vifi.model.vifi_clip import ViFiCLIP

    obj = safe_torch_load(path)
    if not is_paper_checkpoint(obj):
        raise VifiError(f"{path} is neither a vifi checkpoint nor a ViFi-CLIP release (.pth with 'model' holding "
                        "image_encoder.* / text_encoder.* weights)")
    clip_state, prompt_state, sizes = map_paper_state(obj["model"], path)
    if not clip_weights:
        raise VifiError(f"{path} lacks CLIP's token-embedding table (the paper never trains it): pass --clip with "
                        "the OpenAI CLIP weights of the same architecture to supply it")
    clip_path = Path(clip_weights)
    if not clip_path.is_file():
        raise VifiError(f"--clip {clip_weights}: file not found (needed for the token-embedding table)")
    source = read_weight_file(clip_path)
    if "token_embedding.weight" not in source:
        raise VifiError(f"--clip {clip_weights} has no token_embedding.weight")
    clip_state["token_embedding.weight"] = source["token_embedding.weight"]
    clip, arch = clip_from_state_dict(clip_state, str(path))
    facts = paper_facts(obj.get("config"), arch, sizes, path)
    model = ViFiCLIP(clip, arch, "frozen")
    if facts.prompt is not None:
        from vifi.fileio import sha256_file

        # CTX_INIT is honoured for n_t <= 4 (its tokens start the context and prefix the class text); the loaded
        # tensors then replace whatever the init put there.
        model.attach_prompts(Prompts(facts.prompt, clip))
        model.prompts.load_state_dict({k: v.float() for k, v in prompt_state.items()})
        model.base_ref = {"path": str(Path(path).resolve()), "sha256": sha256_file(path)}
        facts = replace(facts, base_path=model.base_ref["path"], base_sha256=model.base_ref["sha256"])
    return model, facts

"""Where CLIP weights come from when `--clip` is not a local file: an open_clip pretrained tag of `--arch`
(`openai`, `laion2b_s34b_b88k`, …) or a Hugging Face Hub repository (`hf-hub:org/name`).

Files already in the cache are used without touching the network. Otherwise the hub must answer within a few
seconds; if it cannot (no network, a firewall, `HF_HUB_OFFLINE=1`) the whole reason is one error line at once,
instead of minutes of retries (see docs/ecosystem.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from vifi.errors import CheckpointError

HF_CONFIG = "open_clip_config.json"
HF_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # open_clip's names, safetensors first
# A vifi checkpoint published in a Hub repository: vifi's own name first, then the Hub's usual one.
HUB_CHECKPOINT_FILES = ("vifi.safetensors", "model.safetensors")
PROBE_TIMEOUT_S = 5.0

_cache_dir: str | None = None  # --cache-dir; None: the Hugging Face default (HF_HUB_CACHE / HF_HOME)


def set_cache_dir(path: str | os.PathLike | None) -> None:
    """Where downloaded weights go and are looked up (the `--cache-dir` of every command that loads CLIP)."""
    global _cache_dir
    _cache_dir = str(path) if path is not None else None


def _cache_description() -> str:
    if _cache_dir is not None:
        return _cache_dir
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def tag_config(arch: str, tag: str, flag: str = "--clip") -> dict[str, Any]:
    """open_clip's pretrained configuration of `tag` for `arch` (where the weights live, QuickGELU or not);
    `flag` names where an unknown tag came from in the error."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        known = f"known tags for {arch}: {', '.join(tags)}" if tags else f"open_clip has no pretrained tags for {arch}"
        raise CheckpointError(f"{flag} {tag}: not a local file, not hf-hub:ORG/NAME and not an open_clip tag of --arch "
                        f"{arch} ({known})")
    return cfg


def tag_quick_gelu(arch: str, tag: str) -> bool:
    """Whether `tag`'s weights were trained with QuickGELU: OpenAI's were, most LAION/DataComp ones were not."""
    import open_clip

    model_cfg = open_clip.get_model_config(arch) or {}
    return bool(tag_config(arch, tag).get("quick_gelu", False) or model_cfg.get("quick_gelu", False))


def fetch_tag_weights(arch: str, tag: str) -> Path:
    """Local path of `tag`'s weight file for `arch`: from the cache, else downloaded."""
    cfg = tag_config(arch, tag)
    what = f"--clip {tag} ({arch})"
    if cfg.get("hf_hub"):
        repo_id, filename = os.path.split(cfg["hf_hub"])  # "org/name/" (default file names) or "org/name/file"
        return hub_file(repo_id, [filename] if filename else list(HF_WEIGHTS), what)
    if cfg.get("url"):
        from open_clip.pretrained import download_pretrained_from_url

        folder = Path(_cache_dir or os.path.expanduser("~/.cache/clip"))
        cached = folder / os.path.basename(cfg["url"])
        if not cached.is_file():
            _require_reachable(cfg["url"], what, cfg["url"])
        return Path(download_pretrained_from_url(cfg["url"], cache_dir=str(folder)))
    raise CheckpointError(f"{what}: open_clip knows no download location for this tag; pass a local weight file")


def fetch_hub_model(model_id: str) -> tuple[dict[str, Any], Path]:
    """(open_clip model config, weight file) of the Hub repository `model_id` (`org/name`)."""
    what = f"--clip hf-hub:{model_id}"
    return hub_model_config(model_id, what), hub_file(model_id, list(HF_WEIGHTS), what)


def fetch_hub_checkpoint(spec: str) -> Path:
    """The vifi checkpoint file of `--checkpoint hf-hub:ORG/NAME[/FILE]`: FILE, else the first of
    HUB_CHECKPOINT_FILES in the repository; cached, else downloaded (the same cache and one-line errors as --clip)."""
    what = f"--checkpoint hf-hub:{spec}"
    parts = [p for p in spec.split("/") if p]
    if len(parts) < 2 or any(p in (".", "..") for p in parts):
        raise CheckpointError(f"{what}: name a Hub repository as hf-hub:ORG/NAME (or hf-hub:ORG/NAME/FILE.safetensors)")
    files = ["/".join(parts[2:])] if len(parts) > 2 else list(HUB_CHECKPOINT_FILES)
    return hub_file("/".join(parts[:2]), files, what, local="--checkpoint PATH")


def hub_model_config(model_id: str, what: str) -> dict[str, Any]:
    """The open_clip model config of the Hub repository `model_id` (cached, else downloaded; one-line errors)."""
    config_path = hub_file(model_id, [HF_CONFIG], what)
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{what}: {HF_CONFIG} is not readable JSON ({exc})") from None
    return config.get("model_cfg", config)


def hub_file(repo_id: str, candidates: list[str], what: str, local: str = "--clip PATH") -> Path:
    """The first of `candidates` in `repo_id`: cached, else downloaded after a quick reachability check (`local`:
    the flag of a local file, the error's last advice)."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    for name in candidates:
        hit = try_to_load_from_cache(repo_id, name, cache_dir=_cache_dir)
        if isinstance(hit, str):
            return Path(hit)
    from huggingface_hub import constants

    _require_reachable(constants.ENDPOINT, what, f"{repo_id} on the Hugging Face Hub", local)
    from huggingface_hub.errors import EntryNotFoundError

    for name in candidates:
        try:
            return Path(hf_hub_download(repo_id, name, cache_dir=_cache_dir))
        except EntryNotFoundError:
            continue
        except Exception as exc:  # noqa: BLE001 - repository missing, gated, network dropped: one line each
            raise CheckpointError(f"{what}: downloading {name} from {repo_id} failed: {_one_line(exc)}") from None
    raise CheckpointError(f"{what}: {repo_id} holds none of {', '.join(candidates)}")


def _require_reachable(url: str, what: str, where: str, local: str = "--clip PATH") -> None:
    """Fail at once, with the whole reason, when the weights are not cached and cannot be downloaded."""
    advice = ("connect once to download them, point --cache-dir at a folder that holds them, or pass a local "
              f"weight file with {local}")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise CheckpointError(f"{what}: {where} is not in the cache ({_cache_description()}) and HF_HUB_OFFLINE is set; "
                        + advice)
    from huggingface_hub import get_session

    try:
        get_session().head(url, timeout=PROBE_TIMEOUT_S)  # through the same proxies as the download would go
    except Exception as exc:  # noqa: BLE001 - any failure to get an answer means no download
        raise CheckpointError(f"{what}: {where} is not in the cache ({_cache_description()}) and {url} cannot be reached "
                        f"({_one_line(exc)}); " + advice) from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text

"""Values of the inference commands' `--views` and `--backend` (eval, zeroshot, index, prepare's check, the Python
API), checked once here; light (no torch, no pydantic) because every `--help` imports the choices."""

from __future__ import annotations

from typing import Literal, get_args

from vifi.errors import InputError


# CPU decoders every inference command offers (`--backend`); training may also decode on the GPU (data.backend).
DecodeBackend = Literal["decord", "pyav", "torchcodec"]


def parse_views(views: str) -> tuple[int, int]:
    try:
        clips, crops = (int(x) for x in views.lower().split("x"))
    except ValueError:
        raise InputError(f"--views {views!r} must look like CLIPSxCROPS, e.g. 1x1 or 4x3") from None
    if clips < 1 or crops not in (1, 3):
        raise InputError(f"--views {views}: clips must be ≥ 1 and crops 1 or 3")
    return clips, crops


def check_backend(backend: str) -> str:
    if backend not in get_args(DecodeBackend):
        raise InputError(f"--backend {backend!r}: use one of {', '.join(get_args(DecodeBackend))}")
    return backend

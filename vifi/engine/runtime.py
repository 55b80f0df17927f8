"""Where and how the engine runs: device, precision, distributed setup (torchrun env), seeding."""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from vifi.errors import VifiError


@dataclass
class Runtime:
    device: torch.device
    precision: str  # bf16 | fp16 | fp32 | fp8 (bf16 autocast, float8 linears: vifi/engine/train.py)
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()


def resolve_device(name: str | None) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VifiError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return torch.device(name)


def setup_runtime(device: str | None = None, precision: str = "auto") -> Runtime:
    """One process per GPU under torchrun (RANK/WORLD_SIZE/LOCAL_RANK in the environment), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if world > 1:
        if dev.type == "cuda":
            dev = torch.device("cuda", local_rank)
            torch.cuda.set_device(dev)
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    if precision == "auto":
        precision = "bf16" if dev.type == "cuda" else "fp32"
    if precision == "fp16" and dev.type != "cuda":
        raise VifiError("precision fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    if precision == "fp8":
        check_fp8(dev)
    return Runtime(device=dev, precision=precision, rank=rank, world=world, local_rank=local_rank)


def check_fp8(dev: torch.device) -> None:
    """train.precision fp8 needs a CUDA GPU (float8 matmuls: compute capability 8.9+) and torchao."""
    if dev.type != "cuda":
        raise VifiError("train.precision fp8 needs a CUDA GPU with float8 support (H100/H200, Ada); use bf16 "
                        "(or fp32 on CPU)")
    import importlib.util

    if importlib.util.find_spec("torchao") is None:
        raise VifiError("train.precision fp8 needs torchao: pip install 'vifi[fp8]' (or torchao), or use bf16")
    if torch.cuda.get_device_capability(dev) < (8, 9):
        raise VifiError(f"train.precision fp8: {torch.cuda.get_device_name(dev)} has no float8 matmuls "
                        "(compute capability 8.9+ needed); use bf16")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(enabled: bool) -> None:
    """PyTorch's determinism switches; costs speed on GPU (no cuDNN autotuning, deterministic kernels)."""
    if not enabled:
        torch.backends.cudnn.benchmark = True
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True

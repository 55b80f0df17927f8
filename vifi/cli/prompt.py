"""`vifi prompt RECIPE --bridge CKPT`: learn deep vision + language prompts on a frozen fine-tuned model."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vifi.cli.finetune import train_from_cli
from vifi.cli.options import auto_resume_option, cache_dir_option, device_option, report_to_option


def prompt(
    recipe: str = typer.Argument(..., help="prompt recipe (prompt-b2n-<ds>, prompt-fewshot-<ds>) or a YAML path"),
    bridge: Optional[str] = typer.Option(None, "--bridge", "--checkpoint",
                                         help="fine-tuned vifi checkpoint (or run folder) the prompts learn on"),
    out: Path = typer.Option(Path("runs/prompt"), "--out", "-o", help="run folder"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override, e.g. --set model.prompt.text_depth=4"),
    data: Optional[str] = typer.Option(None, "--data", help="training list (data.train_list)"),
    val: Optional[str] = typer.Option(None, "--val", help="evaluation list (data.val_list)"),
    labels: Optional[str] = typer.Option(None, "--labels", help="label CSV (data.labels)"),
    root: Optional[str] = typer.Option(None, "--root", help="video root (data.root)"),
    preset: Optional[str] = typer.Option(None, "--preset", help="b2n (16/16/9/9) | fewshot (10/10/12/12)"),
    micro_batch: Optional[int] = typer.Option(None, "--micro-batch", help="per-device micro-batch"),
    device: Optional[str] = device_option(),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out"),
    auto_resume: bool = auto_resume_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a finished run in --out"),
    deterministic: bool = typer.Option(False, "--deterministic", help="PyTorch determinism switches"),
    report_to: Optional[str] = report_to_option(),
    cache_dir: Optional[str] = cache_dir_option(),
) -> None:
    from vifi.errors import VifiError

    presets = {"b2n": (16, 16, 9, 9, 4e-2), "fewshot": (10, 10, 12, 12, 8e-3)}
    overrides = ["model.train=prompt"]
    if preset is not None:
        if preset not in presets:
            raise VifiError(f"--preset {preset!r}: use b2n or fewshot")
        nv, nt, dv, dt, lr = presets[preset]
        overrides += [f"model.prompt.vision_tokens={nv}", f"model.prompt.text_tokens={nt}",
                      f"model.prompt.vision_depth={dv}", f"model.prompt.text_depth={dt}", f"train.lr={lr}"]
    overrides += list(set_ or [])
    values = {"model.init_from": bridge, "data.train_list": data, "data.val_list": val, "data.labels": labels,
              "data.root": root, "train.micro_batch": micro_batch, "train.report_to": report_to}
    train_from_cli(recipe, out, overrides, resume=resume, overwrite=overwrite, device=device,
                   deterministic=deterministic, values=values, auto_resume=auto_resume)


def register(app: typer.Typer) -> None:
    app.command("prompt", help="Bridge-and-prompt: learn V+L prompts on a frozen fine-tuned checkpoint; saves only "
                               "the prompts (bound to that checkpoint)."
                               "\n\nExample: vifi prompt prompt-b2n-ucf101 --bridge runs/k400 --data b2n/train.txt "
                               "--val b2n/base_val.txt --labels labels.csv --root /videos --out runs/prompt")(prompt)

"""`vifi export SRC.pth --out DST.safetensors`: a paper release (or any readable checkpoint) in vifi's format."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vifi import console


def export(
    source: str = typer.Argument(..., help="paper .pth release (full fine-tune or prompting)"),
    out: Path = typer.Option(..., "--out", "-o", help="destination .safetensors"),
    clip: Optional[str] = typer.Option(None, "--clip", help="OpenAI CLIP weights (the token table the .pth lacks)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace existing destination files"),
) -> None:
    from vifi.errors import VifiError
    from vifi.model.checkpoint import add_prompts, is_safetensors, resolve_checkpoint, save_weights
    from vifi.model.facts import PAPER_TEMPLATE, describe
    from vifi.model.paper_import import load_paper_checkpoint

    src = resolve_checkpoint(source)
    if is_safetensors(src):
        raise VifiError(f"{src} is already a safetensors file; vifi export converts paper .pth releases")
    if out.suffix != ".safetensors":
        raise VifiError(f"--out {out} must end in .safetensors")
    model, facts = load_paper_checkpoint(src, clip)
    base = out.with_name(out.stem + ".base.safetensors") if model.prompts is not None else out
    targets = [base, out] if model.prompts is not None else [out]
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise VifiError(f"{existing[0]} exists; pass --overwrite to replace it")
    # What the release's config says (frames, input size, architecture name) travels into the metadata.
    run_facts = {"frames": facts.frames, "input_size": facts.input_size, "arch_name": facts.arch_name,
                 "source": str(src)}
    if model.prompts is None:
        save_weights(out, model, describe(model, train_mode=facts.train_mode, template=facts.template, **run_facts))
        console.note(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
        return
    prompts = model.prompts
    model.prompts = None
    model.head.vision_prompts = None
    model.set_train_mode("frozen")
    # The base is the bridge the prompts were learned on, frozen here; its own training config is not in this file,
    # and every released bridge used the paper's template.
    save_weights(base, model, describe(model, template=PAPER_TEMPLATE, **run_facts))
    add_prompts(model, prompts.cfg, base)  # fresh prompts bound to the exported base ...
    model.prompts.load_state_dict(prompts.state_dict())  # ... holding the released values
    model.set_train_mode("prompt")
    save_weights(out, model, describe(model, template=facts.template, **run_facts))
    console.note(f"wrote {base} (weights) and {out} (prompts, {out.stat().st_size / 2**10:.0f} KiB, bound to {base.name})")


def register(app: typer.Typer) -> None:
    app.command("export", help="Convert a paper .pth release to vifi's safetensors format (no pickle code runs)."
                               "\n\nExample: vifi export k400_fully_supervised.pth --out k400.safetensors")(
        export)

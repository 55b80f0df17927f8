"""`vifi merge A B --alpha 0.5 --out C`: the weight-space ensemble (1 − α)·A + α·B written as a vifi checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vifi.cli.options import cache_dir_option


def merge(
    a: str = typer.Argument(..., help="model A (α = 0), usually zero-shot CLIP: a vifi checkpoint, run folder, "
                                      "paper .pth, or CLIP weights (local file, open_clip tag such as openai, "
                                      "hf-hub:ORG/NAME)"),
    b: str = typer.Argument(..., help="model B (α = 1), usually the fine-tuned model; same kinds as A"),
    alpha: str = typer.Option(..., "--alpha", help="weight of B in [0, 1]: (1 − α)·A + α·B"),
    out: Path = typer.Option(..., "--out", "-o", help="destination .safetensors"),
    clip: Optional[str] = typer.Option(None, "--clip", help="OpenAI CLIP weights: the token table a paper .pth "
                                                            "lacks"),
    arch: str = typer.Option("ViT-B-16", "--arch", help="open_clip architecture of an open_clip tag given as A or B"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out"),
    cache_dir: Optional[str] = cache_dir_option(),
) -> None:
    from vifi import console
    from vifi.errors import VifiError
    from vifi.fileio import check_output_path
    from vifi.model.checkpoint import save_weights
    from vifi.model.merge import WeightEnsemble, check_side_exists, load_side, merged_facts, parse_alphas

    check_side_exists(a, "model A", arch)
    check_side_exists(b, "model B", arch)
    given = parse_alphas(alpha, "--alpha")
    if len(given) != 1:
        raise VifiError(f"--alpha {alpha!r}: give one α (several are evaluated with `vifi eval --wise-ft`)")
    value = given[0]
    if out.suffix != ".safetensors":
        raise VifiError(f"--out {out} must end in .safetensors")
    check_output_path(out, folder=False, overwrite=overwrite)
    side_a = load_side(a, "A", clip=clip, arch=arch)
    side_b = load_side(b, "B", clip=clip, arch=arch)
    for role, side in (("A", side_a), ("B", side_b)):
        if out.exists() and Path(side.source) == out.resolve():
            raise VifiError(f"--out {out} is model {role} itself; write the merge to another file")
    ensemble = WeightEnsemble(side_a, side_b)
    facts = merged_facts(side_a, side_b, value)
    save_weights(out, ensemble.set_alpha(value), facts)  # atomic: an existing --out stays whole until the rename
    console.result(f"{out}\talpha {value:g}")


def register(app: typer.Typer) -> None:
    app.command("merge", help="Interpolate two models of one architecture in weight space (WiSE-FT): "
                              "(1 − α)·A + α·B, written with B's inference facts.\n\nExample: vifi merge "
                              "runs/demo-untrained runs/demo --alpha 0.5 --out runs/demo-wise.safetensors")(merge)

"""`vifi viz tsne|attention|curves`: the paper's pictures, from checkpoints and run folders."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import List, Literal, Optional

import numpy as np
import typer

from vifi import console
from vifi.cli.options import device_option, frames_option

AttentionMethod = Literal["last", "rollout", "relevance"]

viz_app = typer.Typer(help="Pictures: t-SNE of video embeddings, attention maps over frames, training curves, "
                           "confusion matrices. Needs the viz extra: pip install 'vifi[viz]'.",
                      no_args_is_help=True)


def _need_viz_extra(*modules: str) -> None:
    """matplotlib / scikit-learn serve only `vifi viz`, so they are an extra: say so in one line before any work."""
    import importlib

    from vifi.errors import VifiError

    for module in ("matplotlib", *modules):
        try:
            importlib.import_module(module)
        except ImportError:
            package = {"sklearn": "scikit-learn"}.get(module, module)
            raise VifiError(f"vifi viz needs {package}, which is not installed; pip install 'vifi[viz]'") from None


def _check_out(out: Path) -> None:
    """The output folder must be writable before any model is loaded (one error line, not a traceback at the end)."""
    from vifi.fileio import check_output_path

    check_output_path(out, folder=True)


def _names(checkpoints: list[str]) -> list[str]:
    names = [Path(c).stem if Path(c).is_file() else Path(c).name for c in checkpoints]
    return [f"{n} ({i + 1})" if names.count(n) > 1 else n for i, n in enumerate(names)]


@viz_app.command("tsne", help="t-SNE of video embeddings, one panel per checkpoint, with separability scores."
                                "\n\nExample: vifi viz tsne --data test.txt --labels labels.csv --root videos "
                                "--checkpoint runs/demo --out viz")
def tsne(
    data: str = typer.Option(..., "--data", help="annotation list of the videos to embed"),
    labels: str = typer.Option(..., "--labels", help="label CSV (class names for the legend)"),
    root: str = typer.Option(..., "--root", help="video root"),
    checkpoint: List[str] = typer.Option(..., "--checkpoint", help="one panel per checkpoint (repeatable)"),
    out: Path = typer.Option(Path("viz"), "--out", "-o", help="folder for the PNG, embeddings and scores"),
    frames: Optional[int] = frames_option(),
    device: Optional[str] = device_option(),
    clip: Optional[str] = typer.Option(None, "--clip", help="token table for paper .pth checkpoints"),
) -> None:
    from vifi.config import check_cli_values

    check_cli_values(frames=frames, device=device)
    _need_viz_extra("sklearn")
    _check_out(out)
    from vifi.data.annotations import read_label_csv
    from vifi.fileio import write_json_atomic
    from vifi.viz.embed import embed_videos
    from vifi.viz.tsne import plot_tsne, separability, tsne_2d

    class_names = read_label_csv(labels)
    panels, scores = [], {}
    for name, ckpt in zip(_names(checkpoint), checkpoint):
        emb, y = embed_videos(ckpt, data, root, frames=frames, cache_dir=out / "embeddings", device=device, clip=clip)
        score = separability(emb, y)
        panels.append((name, tsne_2d(emb), y, score))
        scores[name] = score
    png = out / f"tsne_{'_vs_'.join(n.replace(' ', '') for n in _names(checkpoint))}.png"
    plot_tsne(panels, class_names, png)
    # the scores are named after their picture: one fixed name let every comparison overwrite the last one's
    write_json_atomic(png.with_name(f"{png.stem}_scores.json"), scores)
    console.note(f"wrote {png}")
    console.result(json.dumps({"png": str(png), "scores": scores}))


ATTENTION_TITLES = {
    "last": "class-token attention to patches, last block (heads averaged)",
    "rollout": "attention rollout over all blocks (Abnar & Zuidema 2020)",
    "relevance": "relevance for the class below the name (Chefer et al. 2021)",
}


@viz_app.command("attention", help="Where the image tower looks in each sampled frame, a row per checkpoint: the "
                                     "last block's class-token attention (last), attention rollout over all "
                                     "blocks (rollout), or gradient-weighted relevance for a class (relevance). "
                                     "Writes a PNG and the maps as .npy [checkpoints, frames, grid, grid]."
                                     "\n\nExample: vifi viz attention clip.mp4 --checkpoint runs/demo --method "
                                     "relevance --out viz")
def attention(
    video: Path = typer.Argument(..., help="a video file"),
    checkpoint: List[str] = typer.Option(..., "--checkpoint", help="one row per checkpoint (repeatable)"),
    out: Path = typer.Option(Path("viz"), "--out", "-o", help="folder for the PNG and the maps (.npy)"),
    frames: Optional[int] = frames_option(8, "frames (columns)"),
    method: AttentionMethod = typer.Option("last", "--method", help="last | rollout | relevance (docs/design.md)"),
    label: Optional[str] = typer.Option(None, "--label", help="relevance: the class to explain (default: each "
                                                              "model's predicted class)"),
    labels: Optional[str] = typer.Option(None, "--labels", help="relevance: label CSV of the classes to score "
                                                                "(default: the checkpoint's own)"),
    classes: Optional[str] = typer.Option(None, "--classes", help='relevance: the classes to score, "a,b,c"'),
    device: Optional[str] = device_option(),
    clip: Optional[str] = typer.Option(None, "--clip"),
) -> None:
    from vifi.config import check_cli_values

    check_cli_values(frames=frames, device=device)
    _need_viz_extra()
    _check_out(out)
    from vifi.errors import VifiError
    from vifi.fileio import atomic_path
    from vifi.viz.attention import attention_rows, given_classes, plot_attention

    if not video.is_file():
        raise VifiError(f"video not found: {video}")
    given = given_classes(method, label, labels, classes)
    rows = attention_rows(checkpoint, video, frames=frames, method=method, label=label, classes=given,
                          device=device, clip=clip)
    rows = [replace(row, name=name) for name, row in zip(_names(checkpoint), rows)]
    # The picture names the video's folder too: datasets repeat file names across class folders (the demo has six
    # test_000.mp4), and a stem alone let one video's maps overwrite another's. `last` adds no method suffix.
    stem = f"attention_{video.resolve().parent.name}_{video.stem}"
    stem = stem if method == "last" else f"{stem}_{method}"
    png, maps = out / f"{stem}.png", out / f"{stem}.npy"
    plot_attention(rows, png, f"{video.name}: {ATTENTION_TITLES[method]}")
    with atomic_path(maps) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.stack([row.maps for row in rows]))
    for row in rows:
        if row.explained is not None and not row.maps.any():
            console.warn(f"{row.name}: the relevance map for {row.explained!r} is zero on every patch (no "
                         "attention to a patch raised that class's score); try --label with another class")
    console.note(f"wrote {png} and {maps}")
    console.result(json.dumps({"png": str(png), "maps": str(maps), "method": method,
                               "explained": {row.name: row.explained for row in rows} if method == "relevance"
                               else None}))


@viz_app.command("curves", help="Loss, accuracy and learning rate of run folders."
                                  "\n\nExample: vifi viz curves runs/demo --out viz")
def curves(
    runs: List[Path] = typer.Argument(..., help="run folders (log.csv, summary.csv)"),
    out: Path = typer.Option(Path("viz"), "--out", "-o", help="folder for the PNG"),
    smooth: int = typer.Option(1, "--smooth", help="moving average of the loss over this many steps"),
) -> None:
    _need_viz_extra()
    _check_out(out)
    from vifi.viz.curves import plot_curves

    png = out / f"curves_{'_vs_'.join(r.name for r in runs)}.png"
    plot_curves(runs, png, smooth=max(1, smooth))
    console.note(f"wrote {png}")


@viz_app.command("confusion", help="The confusion matrix of an evaluation (confusion.csv) as a PNG.\n\n"
                                   "Example: vifi viz confusion runs/eval-ucf101 --out viz")
def confusion(
    source: Path = typer.Argument(..., help="folder of `vifi eval` / `vifi finetune`, or its confusion.csv"),
    out: Path = typer.Option(Path("viz"), "--out", "-o", help="folder for the PNG"),
) -> None:
    from vifi.viz.confusion import plot_confusion, read_confusion

    _need_viz_extra()
    _check_out(out)
    matrix = read_confusion(source)
    name = source.name if source.is_dir() else source.parent.name
    png = out / f"confusion_{name}.png"
    plot_confusion(matrix, png, f"{name}: confusion matrix")
    console.note(f"wrote {png}")


def register(app: typer.Typer) -> None:
    app.add_typer(viz_app, name="viz")

"""`vifi zeroshot VIDEO… --labels "a,b,c"`: top-k labels for one's own videos, as a table and a CSV/JSON file."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vifi.cli.options import (Backend, backend_option, batch_option, cache_dir_option, device_option, frames_option,
                              overwrite_option)


def zeroshot(
    videos: List[str] = typer.Argument(..., help="video files, folders, or - to read paths from stdin"),
    labels: Optional[str] = typer.Option(None, "--labels", help="comma-separated candidate labels"),
    labels_file: Optional[str] = typer.Option(None, "--labels-file", help="one label per line"),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="vifi checkpoint, prompt artifact, run "
                                                                       "folder or paper .pth"),
    clip: Optional[str] = typer.Option(None, "--clip", help="CLIP weights (local file, open_clip tag such as "
                                                            "openai, or hf-hub:ORG/NAME): plain CLIP, or the token "
                                                            "table a paper .pth needs"),
    arch: str = typer.Option("ViT-B-16", "--arch",
                             help="open_clip architecture of --clip (e.g. ViT-B-16, ViT-L-14), or hf-hub:ORG/NAME"),
    frames: Optional[int] = frames_option(),
    views: str = typer.Option("1x1", "--views", help="CLIPSxCROPS: 1x1 or 4x3"),
    top_k: int = typer.Option(5, "--top-k", help="labels shown per video"),
    vanilla: bool = typer.Option(False, "--vanilla", help="bare labels as text, no prompt template"),
    template: Optional[str] = typer.Option(None, "--template", help="prompt template, e.g. 'a video of {}.' "
                                                                    "(default: the checkpoint's)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help="write video,label,prob rows (.csv) or .json; - writes the CSV to "
                                            "stdout (the table goes to stderr)"),
    as_json: bool = typer.Option(False, "--json", help="print only the JSON result on stdout (the table goes to stderr)"),
    overwrite: bool = overwrite_option("replace an existing --out file"),
    device: Optional[str] = device_option(),
    batch: int = batch_option(4),
    backend: Backend = backend_option(),
    skip_undecodable: bool = typer.Option(False, "--skip-undecodable", help="score the videos that decode; name "
                                                                            "each one that does not on stderr"),
    window: Optional[float] = typer.Option(None, "--window", help="a timeline: the most probable label of each "
                                                                  "SECONDS-long window (video,start,end,label,prob)"),
    stride: Optional[float] = typer.Option(None, "--stride", help="seconds between window starts (default: the "
                                                                  "window)"),
    cache_dir: Optional[str] = cache_dir_option(),
) -> None:
    from vifi.inference_flags import check_backend, parse_views
    from vifi.config import check_cli_values
    from vifi.errors import VifiError
    from vifi.fileio import check_output_path, is_stdout
    from vifi.model.facts import inference_inputs
    from vifi.model.factory import load_for_inference
    from vifi.search.windows import check_window
    from vifi.zeroshot import (classify, collect_videos, parse_labels, print_timeline, print_top_k, timeline,
                               write_output)

    check_backend(backend)
    names = parse_labels(labels, labels_file)
    view_pair = parse_views(views)
    window, stride = check_window(window, stride)
    if window is not None and view_pair[0] != 1:
        raise VifiError(f"--views {views} with --window: a window is one clip; give --views 1x1 or 1x3")
    if top_k < 1:
        raise VifiError("--top-k must be at least 1")
    check_cli_values(frames=frames, batch=batch, device=device, template=template)
    to_stdout = is_stdout(out)
    if as_json and to_stdout:
        raise VifiError("--json and --out - both print on stdout; give one of them")
    if out is not None:
        check_output_path(out, folder=False, overwrite=overwrite)  # before any decoding: a bad --out costs nothing
    paths = collect_videos(videos)
    model, facts = load_for_inference(checkpoint, clip, arch)
    inputs = inference_inputs(facts, frames=frames, template=template, vanilla=vanilla)
    if window is not None:
        table = timeline(paths, names, model, inputs, window=window, stride=stride, views=view_pair, device=device,
                         batch=batch, backend=backend, skip_undecodable=skip_undecodable)
    else:
        table = classify(paths, names, model, inputs, views=view_pair, device=device, batch=batch, backend=backend,
                         skip_undecodable=skip_undecodable)
    from vifi import console
    from vifi.zeroshot import render_output

    # stdout carries one thing: the JSON, the CSV (--out -) or else the table; the table then moves to stderr.
    console.reserve_stdout(as_json or to_stdout)
    print_timeline(table) if window is not None else print_top_k(table, min(top_k, len(names)))
    if as_json:
        console.result(render_output(table, True))
    if out is not None:
        write_output(table, out)


def register(app: typer.Typer) -> None:
    app.command("zeroshot", help="Classify your own videos against free-form labels (CPU or GPU)."
                                 "\n\nExample: ls clips/*.mp4 | vifi zeroshot - --labels \"juggling,cooking\" "
                                 "--checkpoint runs/k400 --out - | sort -t, -k3 -r")(zeroshot)

"""`vifi index VIDEOS --checkpoint C --out INDEX` and `vifi search "text" --index INDEX`: text-to-video search."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from vifi.cli.options import (Backend, backend_option, batch_option, cache_dir_option, device_option, frames_option,
                              overwrite_option, workers_option)


def index_command(
    videos: List[str] = typer.Argument(..., help="video files, folders, or - to read paths from stdin"),
    out: Path = typer.Option(..., "--out", "-o", help="index folder (created, or updated: new and changed videos "
                                                      "are embedded, unchanged ones skipped)"),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint",
                                             help="vifi checkpoint, prompt artifact, run folder or paper .pth "
                                                  "(default for an existing index: the one that built it)"),
    clip: Optional[str] = typer.Option(None, "--clip", help="CLIP weights a paper .pth needs (token table)"),
    frames: Optional[int] = frames_option(),
    views: Optional[str] = typer.Option(None, "--views", help="CLIPSxCROPS averaged into one embedding (default 1x1)"),
    batch: int = batch_option(),
    workers: int = workers_option(),
    commit_every: int = typer.Option(64, "--commit-every", help="videos embedded between commits (what a killed "
                                                                "run keeps)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="rebuild an index made with another checkpoint, "
                                                              "frames or views"),
    prune: bool = typer.Option(False, "--prune", help="remove indexed videos that are no longer on disk"),
    window: Optional[float] = typer.Option(None, "--window", help="embed each SECONDS-long window of a video (moments: "
                                                                  "`vifi search` then returns start and end)"),
    stride: Optional[float] = typer.Option(None, "--stride", help="seconds between window starts (default: the "
                                                                  "window, no overlap)"),
    device: Optional[str] = device_option(),
    backend: Backend = backend_option(),
    cache_dir: Optional[str] = cache_dir_option(),
) -> None:
    from vifi import console
    from vifi.inference_flags import check_backend, parse_views
    from vifi.config import check_cli_values
    from vifi.errors import VifiError
    from vifi.fileio import check_output_path
    from vifi.search.build import build_index
    from vifi.search.windows import check_window
    from vifi.zeroshot import collect_videos

    check_backend(backend)
    check_cli_values(frames=frames, batch=batch, workers=workers, device=device)
    if commit_every < 1:
        raise VifiError(f"--commit-every {commit_every}: must be at least 1")
    view_pair = parse_views(views) if views is not None else None
    window = check_window(window, stride)[0]  # the stride stays as given: an index rerun keeps its recorded one
    check_output_path(out, folder=True)
    paths = collect_videos(videos)
    counts = build_index(paths, out, checkpoint=checkpoint, clip=clip, frames=frames, views=view_pair, batch=batch,
                         workers=workers, backend=backend, device=device, commit_every=commit_every,
                         overwrite=overwrite, prune=prune, window=window, stride=stride)
    # `new`/`changed` count what this run tried; `embedded` what succeeded (undecodable ones are `failed`).
    console.result(f"{out}: {counts['videos']} videos; this run embedded {counts['embedded']} of "
                   f"{counts['new'] + counts['changed']} new or changed ({counts['new']} new, {counts['changed']} "
                   f"changed), skipped {counts['unchanged']} unchanged, {counts['failed']} failed, "
                   f"{counts['pruned']} pruned")


def search_command(
    queries: List[str] = typer.Argument(..., help="one or more texts, e.g. \"a person juggling\", or - to read "
                                                  "them from stdin (one a line)"),
    index: Path = typer.Option(..., "--index", help="index folder made by `vifi index`"),
    top_k: int = typer.Option(10, "--top-k", help="videos shown per query"),
    use_template: bool = typer.Option(True, "--template/--raw",
                                      help="--template (default) puts the query into the checkpoint's class "
                                           "template (e.g. 'a photo of a {}.'), as its class names were trained; "
                                           "--raw encodes it as typed (docs/search.md)"),
    cosine: bool = typer.Option(False, "--cosine", help="rank by the plain cosine, without correcting each video's "
                                                        "closeness to every text (docs/search.md)"),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="where the index's checkpoint is now, if "
                                                                       "it moved (its sha256 must match)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write rank,score,path,query,cosine rows (.csv) "
                                                                 "or .json; - writes the CSV to stdout"),
    as_json: bool = typer.Option(False, "--json", help="print only the JSON result on stdout (no table)"),
    overwrite: bool = overwrite_option("replace an existing --out file"),
    no_merge: bool = typer.Option(False, "--no-merge", help="moments: list every window, without merging the "
                                                            "overlapping windows of a video into one hit"),
    device: Optional[str] = device_option(),
) -> None:
    from vifi import console
    from vifi.config import check_cli_values
    from vifi.errors import VifiError
    from vifi.fileio import check_output_path, is_stdout, write_text_atomic
    from vifi.search.query import print_results, read_queries, render, search, stdout_may_close

    if top_k < 1:
        raise VifiError(f"--top-k {top_k}: must be at least 1")
    texts = list(dict.fromkeys(q.strip() for q in read_queries(queries)))  # a query given twice is answered once
    if not all(texts):
        raise VifiError("a query is empty; give the text to search for, e.g. \"a person juggling\"")
    check_cli_values(device=device)
    to_stdout = is_stdout(out)
    if as_json and to_stdout:
        raise VifiError("--json and --out - both print on stdout; give one of them")
    if out is not None:
        check_output_path(out, folder=False, overwrite=overwrite)
    table = search(index, texts, top_k=top_k, use_template=use_template, cosine=cosine, checkpoint=checkpoint,
                   device=device, merge=not no_merge)
    # stdout carries one thing: the JSON, the CSV (--out -) or else the table; the table then moves to stderr.
    console.reserve_stdout(as_json or to_stdout)
    with stdout_may_close():
        print_results(table)
        if as_json:
            console.result(render(table, True))
        if out is not None:
            write_text_atomic(out, render(table, out.suffix.lower() == ".json"))


def register(app: typer.Typer) -> None:
    app.command("index", help="Embed videos into a search index (incremental, resumable)."
                              "\n\nExample: vifi index clips/ --checkpoint runs/k400 --out clips.index")(index_command)
    app.command("search", help="Rank indexed videos by similarity with a text."
                               "\n\nExample: vifi search \"a person juggling\" --index clips.index --out - "
                               "| tail -n +2 | cut -d, -f3")(search_command)

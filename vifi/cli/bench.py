"""`vifi bench data|train|eval`: throughput benchmarks. The last line printed is one JSON object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

bench_app = typer.Typer(help="Benchmarks: data loading, train step, eval step. Last line of output is JSON.",
                        no_args_is_help=True)


def _emit(record: dict) -> None:
    print(json.dumps(record, sort_keys=True))


@bench_app.command("data")
def data(
    data_list: Optional[str] = typer.Option(None, "--data", help="annotation list (default: synthetic 10 s clips)"),
    root: Optional[str] = typer.Option(None, "--root", help="video root of --data"),
    frames: int = typer.Option(32, "--frames", help="frames per clip"),
    size: int = typer.Option(224, "--size", help="crop size"),
    workers: int = typer.Option(2, "--workers", help="DataLoader processes"),
    clips: int = typer.Option(32, "--clips", help="clips to load (after warm-up)"),
    backend: str = typer.Option("decord", "--backend", help="decord | pyav"),
    model_clips_per_s: Optional[float] = typer.Option(None, "--model-clips-per-s",
                                                      help="measured train speed (vifi bench train) -> data-wait share"),
    compare_formats: Optional[Path] = typer.Option(None, "--compare-formats",
                                                   help="re-encode this video in each storage format and time each"),
    short_side: int = typer.Option(256, "--short-side", help="short side for --compare-formats"),
) -> None:
    from vifi.bench.data import compare_formats as compare, data_wait_fraction, loader_throughput, synthetic_entries
    from vifi.data.annotations import read_annotation_list
    from vifi.errors import VifiError
    from vifi.results import print_table

    if compare_formats is not None:
        if not compare_formats.is_file():
            raise VifiError(f"--compare-formats {compare_formats}: file not found")
        import pandas as pd

        rows = compare(compare_formats, short_side=short_side, frames=frames, clips=clips,
                       formats=["h264", "h264-intra", "mjpeg"], backend=backend)
        print_table(pd.DataFrame(rows), f"training data path, 1 process, {frames} frames/clip: {compare_formats.name}")
        _emit({"compare_formats": rows, "frames": frames, "short_side": short_side})
        return
    if data_list:
        if not root:
            raise VifiError("--data needs --root")
        entries = read_annotation_list(data_list)
        source = data_list
    else:
        import tempfile

        folder = Path(tempfile.gettempdir()) / "vifi-bench-data"
        entries, root = synthetic_entries(folder), str(folder)
        source = "synthetic 10 s 340x256 30 fps H.264 clips"
    result = loader_throughput(entries, root, frames=frames, size=size, workers=workers, clips=clips, backend=backend)
    result["data_wait_fraction"] = data_wait_fraction(result["clips_per_s"], model_clips_per_s)
    result["source"] = source
    import pandas as pd

    print_table(pd.DataFrame([{k: (round(v, 1) if isinstance(v, float) else v) for k, v in result.items()
                               if k != "source"}]), f"data loading: {source}")
    _emit(result)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")

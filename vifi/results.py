"""Result tables: pandas frames written as CSV / Markdown / JSON, and rendered with rich; per-class metrics and
the provenance block every results.json carries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from vifi.fileio import write_json_atomic, write_text_atomic


def frame_to_markdown(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v, c) for v, c in zip(row, cols)) + " |")
    return "\n".join(lines) + "\n"


EXACT_COLUMNS = {"alpha"}  # settings, not measurements: shown exactly (α 0.333 and 0.335 are different models)


def shortest_float(value: float) -> str:
    """Shortest text that reads back as `value` (0, 0.25, 0.333, 1)."""
    return repr(float(value)).removesuffix(".0")


def _fmt(value: Any, column: str = "") -> str:
    if isinstance(value, float):
        return shortest_float(value) if column in EXACT_COLUMNS else f"{value:.2f}"
    return str(value)


def write_table(out_dir: str | Path, table: pd.DataFrame, summary: dict[str, Any], title: str) -> None:
    """results.csv / results.md / results.json in `out_dir`; `summary` is the top level of results.json."""
    from vifi.run_folder import RunFolder

    run = RunFolder(out_dir)
    write_text_atomic(run.results_csv, table.to_csv(index=False))
    write_text_atomic(run.results_md, f"# {title}\n\n" + frame_to_markdown(table))
    write_json_atomic(run.results_json,
                      round_floats({**summary, "table": json.loads(table.to_json(orient="records"))}))


JSON_DECIMALS = 4  # 96.6667, not 96.66666388511658: float32 noise is not information


def round_floats(value: Any, decimals: int = JSON_DECIMALS) -> Any:
    """Every float in a JSON-like tree rounded (ints, strings, None untouched)."""
    if isinstance(value, float):
        return round(value, decimals)
    if isinstance(value, dict):
        return {k: round_floats(v, decimals) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [round_floats(v, decimals) for v in value]
    return value


def with_class_names(predictions: pd.DataFrame, class_names: list[str]) -> pd.DataFrame:
    """predictions.csv rows with `label_name` and `pred_name` appended (the id columns keep their positions,
    so scripts that index them keep working)."""
    names = pd.Series(class_names)
    return predictions.assign(label_name=names[predictions["label"]].to_numpy(),
                              pred_name=names[predictions["pred"]].to_numpy())


def class_metrics(predictions: pd.DataFrame, class_names: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """(per-class table, confusion matrix, mean-class top-1 %) from the top-1 predictions, via torchmetrics.

    per class: videos, correct, top1 = correct / videos (%; empty for a class with no videos in the list).
    Mean-class accuracy averages top1 over the classes that have videos (a class absent from the list has no
    accuracy to average). Confusion rows are true classes, columns predicted classes, cells video counts.
    """
    import torch
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    n = len(class_names)
    matrix = multiclass_confusion_matrix(torch.tensor(predictions["pred"].tolist(), dtype=torch.long),
                                         torch.tensor(predictions["label"].tolist(), dtype=torch.long), num_classes=n)
    videos, correct = matrix.sum(dim=1).double(), matrix.diagonal().double()
    present = videos > 0
    top1 = torch.where(present, 100.0 * correct / videos.clamp(min=1), torch.full_like(videos, float("nan"),
                                                                                    dtype=torch.float64))
    per_class = pd.DataFrame({"class_id": range(n), "class_name": class_names, "videos": videos.long().tolist(),
                              "correct": correct.long().tolist(),
                              "top1": [round(float(v), JSON_DECIMALS) for v in top1]})
    confusion = pd.DataFrame(matrix.numpy(), index=pd.Index(class_names, name="true\\predicted"),
                             columns=class_names)
    mean_class = float(top1[present].mean()) if bool(present.any()) else float("nan")
    return per_class, confusion, mean_class


def model_record(checkpoint: str | None, *, clip: str | None = None, arch: str | None = None) -> dict[str, Any]:
    """Which weights: a checkpoint (run folder resolved to its weights file) by sha256, else the CLIP weights asked
    for (a local file by sha256, an open_clip tag or hub name as given)."""
    import os

    from vifi.fileio import sha256_cached

    if checkpoint:
        from vifi.model.checkpoint import resolve_checkpoint

        return {"checkpoint": str(checkpoint), "sha256": sha256_cached(resolve_checkpoint(checkpoint))}
    return {"clip": clip, "arch": arch, **({"sha256": sha256_cached(clip)} if clip and os.path.isfile(clip) else {})}


def inputs_record(model: dict[str, Any], *, data: str, labels: str | None, root: str, entries: list,
                  **settings: Any) -> dict[str, Any]:
    """Everything that produced an evaluation's numbers: the model, the list and label files (sha256), the video
    root, the videos' size and mtime, and the settings (views, frames, text, limit, α …). A result read back
    instead of recomputed must carry exactly this record (docs/reliability.md, "Results read back")."""
    import hashlib
    import os

    from vifi.fileio import sha256_cached

    videos = hashlib.sha256()
    for entry in entries:
        try:
            st = os.stat(Path(root) / entry.path)
            stamp = f"{st.st_size}\t{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"  # the reader that follows names it; the record only has to differ
        videos.update(f"{entry.path}\t{stamp}\n".encode())
    return round_floats({"model": model, "list": {"path": str(data), "sha256": sha256_cached(data)},
                         "labels": {"path": str(labels), "sha256": sha256_cached(labels) if labels else None},
                         "root": os.path.realpath(root), "videos": videos.hexdigest()[:32], **settings})


def differences(saved: dict[str, Any] | None, wanted: dict[str, Any]) -> list[str]:
    """The top-level keys of an inputs record that differ (all of them when nothing was saved)."""
    saved = saved or {}
    return [k for k in sorted(set(saved) | set(wanted)) if saved.get(k) != wanted.get(k)]


def device_description(device) -> str:
    import platform

    import torch

    if device is None:
        return "unknown"
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine() or 'unknown'})"


def provenance(*, device=None, config: Any = None) -> dict[str, Any]:
    """What produced a result: versions, the vifi source commit, the command, the device, wall time, config hash."""
    import hashlib
    import shlex
    import sys
    import time
    from datetime import datetime, timezone

    import open_clip
    import torch

    import vifi

    record = {"vifi": vifi.__version__, "torch": torch.__version__, "open_clip": open_clip.__version__,
              "python": sys.version.split()[0], "git_commit": _source_commit(),
              "command": shlex.join(["vifi", *sys.argv[1:]]), "device": device_description(device),
              "wall_time_s": round(time.time() - vifi.STARTED, 1),
              "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if config is not None:
        canonical = config if isinstance(config, str) else json.dumps(config, sort_keys=True, default=str)
        record["config_sha256"] = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return record


def _source_commit() -> str | None:
    """The commit of the vifi source tree when it is a git checkout (an editable install), `-dirty` if changed."""
    import subprocess

    import vifi

    tree = Path(vifi.__file__).resolve().parent.parent
    if not (tree / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def print_table(table: pd.DataFrame, title: str, *, to_stdout: bool = True) -> None:
    """The table as rich renders it: on stdout when it is the result asked for, else on stderr (see console.py)."""
    from rich.table import Table

    from vifi import console

    rich_table = Table(title=title)
    for col in table.columns:
        rich_table.add_column(str(col), justify="right" if pd.api.types.is_numeric_dtype(table[col]) else "left")
    for row in table.itertuples(index=False):
        rich_table.add_row(*(_fmt(v, str(c)) for v, c in zip(row, table.columns)))
    console.print_rich(rich_table, to_stdout=to_stdout)

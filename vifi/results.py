"""Result tables: pandas frames written as CSV / Markdown / JSON, and rendered with rich."""

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
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def write_table(out_dir: str | Path, table: pd.DataFrame, summary: dict[str, Any], title: str) -> None:
    """results.csv / results.md / results.json in `out_dir`; `summary` is the top level of results.json."""
    from vifi.run_folder import RunFolder

    run = RunFolder(out_dir)
    write_text_atomic(run.results_csv, table.to_csv(index=False))
    write_text_atomic(run.results_md, f"# {title}\n\n" + frame_to_markdown(table))
    write_json_atomic(run.results_json, {**summary, "table": json.loads(table.to_json(orient="records"))})


def print_table(table: pd.DataFrame, title: str, *, to_stdout: bool = True) -> None:
    """The table as rich renders it: on stdout when it is the result asked for, else on stderr (see console.py)."""
    from rich.table import Table

    from vifi import console

    rich_table = Table(title=title)
    for col in table.columns:
        rich_table.add_column(str(col), justify="right" if pd.api.types.is_numeric_dtype(table[col]) else "left")
    for row in table.itertuples(index=False):
        rich_table.add_row(*(_fmt(v) for v in row))
    console.print_rich(rich_table, to_stdout=to_stdout)

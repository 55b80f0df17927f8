"""Write a protocol's per-split rows and aggregated table: results.{csv,md,json} + runs.csv in OUT."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from vifi import console
from vifi.fileio import write_json_atomic, write_text_atomic
from vifi.protocols.runner import run_protocol
from vifi.protocols.suite import Suite
from vifi.results import frame_to_markdown, print_table
from vifi.run_folder import RunFolder

NOTES = {
    "zeroshot": "mean ± sample std over the splits of each dataset",
    "base2novel": "base/novel: mean ± sample std over seeds; HM = 2·B·N/(B+N) of the seed-averaged B and N (as the paper)",
    "fewshot": "one draw per K",
    "supervised": "top-1/top-5 with the views given",
}


def run_and_report(suite: Suite, out: Path, **kwargs) -> tuple[pd.DataFrame, pd.DataFrame]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs, summary = run_protocol(suite, out, **kwargs)
    write_report(out, suite.protocol, runs, summary, kwargs.get("views", (1, 1)), device=kwargs.get("device"))
    print_table(runs[[c for c in runs.columns if c != "checkpoint" and "top5" not in c]],
                f"{suite.protocol}: per split/seed")
    print_table(shown(summary), f"{suite.protocol}: aggregated")
    console.note(NOTES[suite.protocol])
    return runs, summary


def shown(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[[c for c in summary.columns if not c.endswith("_mean")]]


def write_report(out: Path, protocol: str, runs: pd.DataFrame, summary: pd.DataFrame, views, *,
                 extra: dict | None = None, heading: str | None = None, device: str | None = None) -> None:
    """`extra`: more top-level keys of results.json; `heading`: a line under the title of results.md; `device`:
    the --device given (None: the one chosen automatically), for the provenance block every results.json has."""
    from vifi.engine.runtime import resolve_device
    from vifi.results import provenance

    write_text_atomic(out / "runs.csv", runs.to_csv(index=False))
    run = RunFolder(out)
    write_text_atomic(run.results_csv, summary.to_csv(index=False))
    md = (f"# {protocol} protocol\n\n" + (f"{heading}.\n\n" if heading else "") +
          f"Views {views[0]}x{views[1]}; the last epoch of every fine-tune is reported.\n\n"
          f"## Aggregated\n\n{NOTES[protocol]}.\n\n" + frame_to_markdown(shown(summary)) +
          "\n## Per split / seed\n\n" + frame_to_markdown(runs))
    write_text_atomic(run.results_md, md)
    write_json_atomic(run.results_json, {
        "protocol": protocol, "views": f"{views[0]}x{views[1]}", "reported": "last epoch", **(extra or {}),
        "summary": json.loads(summary.to_json(orient="records")), "runs": json.loads(runs.to_json(orient="records")),
        "provenance": provenance(device=resolve_device(device), config={
            "protocol": protocol, "views": f"{views[0]}x{views[1]}", **(extra or {}),
            "runs": json.loads(runs.to_json(orient="records"))})})

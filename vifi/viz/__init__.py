"""Pictures (`vifi viz`). `read_table` is how every picture reads a CSV a run wrote: one error line, never a
pandas traceback, when the file is empty, not a CSV or lacks the columns the picture draws."""

from __future__ import annotations

from pathlib import Path


def read_table(path: Path, needed: tuple[str, ...], what: str, **read_csv_args):
    """The CSV at `path` as a DataFrame holding the `needed` columns, else a VifiError saying what `what` needs."""
    import pandas as pd

    from vifi.errors import VifiError

    try:
        table = pd.read_csv(path, **read_csv_args)
    except pd.errors.EmptyDataError:
        raise VifiError(f"{path} is empty; {what}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise VifiError(f"{path} is not a readable CSV ({str(exc).splitlines()[0][:120]}); {what}") from None
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise VifiError(f"{path} has no {', '.join(missing)} column{'s' if len(missing) > 1 else ''}; {what}")
    return table

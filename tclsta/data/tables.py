"""Reading the pipeline's CSV files with every value checked, so a bad one is named, not a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from tclsta.errors import BadTableError, MissingFileError


def read_table(
    path: Path,
    text: Sequence[str] = (),
    integers: Sequence[str] = (),
    numbers: Sequence[str] = (),
    choices: Mapping[str, Sequence[str]] | None = None,
    number_prefix: str | None = None,
) -> pd.DataFrame:
    """A CSV whose ``text`` columns are strings, ``integers`` whole numbers, ``numbers`` (and every column
    starting with ``number_prefix``) finite floats, and ``choices`` columns one of the listed values;
    raises naming the file, row and column otherwise."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "is not there: check the path, or re-run the stage that writes it")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise BadTableError(path, f"not a readable CSV ({exc})") from exc
    missing = [c for c in (*text, *integers, *numbers) if c not in table.columns]
    if missing:
        raise BadTableError(path, f"lacks column(s) {', '.join(missing)}")
    for column, allowed in (choices or {}).items():
        bad = ~table[column].isin(allowed)
        if bad.any():
            _fail(path, table, bad, column, f"one of {', '.join(allowed)}")
    for column in integers:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() | (values != values.round())
        if bad.any():
            _fail(path, table, bad, column, "an integer")
        table[column] = values.astype("int64")
    if number_prefix:
        numbers = [*numbers, *(c for c in table.columns if c.startswith(number_prefix))]
    for column in numbers:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() | ~values.abs().lt(float("inf"))
        if bad.any():
            _fail(path, table, bad, column, "a finite number")
        table[column] = values.astype("float64")
    return table


def _fail(path: Path, table: pd.DataFrame, bad: pd.Series, column: str, expected: str) -> None:
    row = int(bad.to_numpy().argmax())
    raise BadTableError(path, f"row {row + 2}, column '{column}': expected {expected}, got {table[column].iloc[row]!r}")

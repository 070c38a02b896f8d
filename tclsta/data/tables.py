"""Reading the pipeline's CSV files with every value checked, so a bad one is named, not a traceback."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from tclsta.errors import BadTableError, FileError, MissingFileError


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
        table = pd.read_csv(io.StringIO(read_text_file(path, BadTableError)), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise BadTableError(path, f"not a readable CSV ({str(exc).strip()})") from exc
    if not isinstance(table.index, pd.RangeIndex):  # pandas takes a first row with one field too many as an index
        raise BadTableError(path, "row 2 has more fields than the header")
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


def read_text_file(path: Path, error: type[FileError]) -> str:
    """The text of a UTF-8 file; a NUL byte or bytes that are not UTF-8 are ``error`` naming the file and line."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise error(path, f"cannot read it: {exc.strerror}") from exc
    newline = b"\n"
    if b"\0" in data:
        raise error(path, f"line {data.count(newline, 0, data.index(0)) + 1}: a NUL byte; not a text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(newline, 0, exc.start) + 1
        raise error(path, f"line {line}: byte {data[exc.start]:#04x} is not UTF-8 text; save the file as UTF-8") from exc


def _fail(path: Path, table: pd.DataFrame, bad: pd.Series, column: str, expected: str) -> None:
    row = int(bad.to_numpy().argmax())
    raise BadTableError(path, f"row {row + 2}, column '{column}': expected {expected}, got {table[column].iloc[row]!r}")

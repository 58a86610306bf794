"""Import a ``timestamp,value`` CSV into one metric stream (``pycemaker import-csv``).

For real data recorded elsewhere (such as the NAB CloudWatch series in ``data/nab/``): each
row becomes one document in the original shape (:func:`telemetry.catalogue.to_document`), so
everything that reads the store (health, frames, the backtest) reads it like collected data.

- Timestamps without a zone are UTC (CloudWatch and NAB record UTC); timestamps with a zone
  are converted to UTC.
- ``scale`` multiplies every value into the stream's unit: 0.01 turns a percentage into
  the 0-1 ratio ``cpu_usage`` holds; 1/300 turns a count per 5 minutes into the requests
  per second ``request_count`` holds.
- ``request_count``: the CSV's value is the success rate (``value_success``); ``value_fail``
  is left out of the document (reads back as missing, never as 0 failures).
- Idempotent: the stream's unique index on ``time_series`` skips rows already stored, so an
  import can be rerun (or resumed) without duplicating anything.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from telemetry import frames, rollups, store
from telemetry.catalogue import REQUESTS, STREAMS_BY_COLLECTION, Stream, to_document
from telemetry.settings import Settings

log = logging.getLogger(__name__)
UTC = dt.timezone.utc
BATCH = 5000


class CsvImportError(ValueError):
    """The CSV or the requested stream cannot be imported; the message says why."""


@dataclass(frozen=True)
class ImportResult:
    stream: str
    rows: int
    inserted: int
    duplicates: int
    #: Rows left out: an unreadable timestamp or value, or a timestamp repeated within the file.
    skipped: int
    first: dt.datetime | None
    last: dt.datetime | None


def parse_scale(text: str) -> float:
    """A positive factor, as a number (``0.01``) or a fraction (``1/300``)."""
    from fractions import Fraction

    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise CsvImportError(f"--scale must be a number or a fraction such as 1/300, got {text!r}") from None
    if value <= 0:
        raise CsvImportError(f"--scale must be positive, got {text!r}")
    return value


def stream_named(name: str) -> Stream:
    """The stream whose collection is ``name``; a clear error otherwise."""
    try:
        return STREAMS_BY_COLLECTION[name]
    except KeyError:
        known = ", ".join(STREAMS_BY_COLLECTION)
        raise CsvImportError(f"unknown stream {name!r}: use one of {known}") from None


def read_csv(path: Path | str, scale: float = 1.0) -> tuple[pd.Series, int]:
    """The file's values (scaled) on a UTC DatetimeIndex, sorted; and how many rows were skipped."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str)
    except FileNotFoundError:
        raise CsvImportError(f"no such file: {path}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CsvImportError(f"{path} is not a readable CSV: {exc}") from exc
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    if not {"timestamp", "value"} <= set(raw.columns):
        raise CsvImportError(f"{path} needs a header with 'timestamp' and 'value' columns; it has {list(raw.columns)}")
    times = pd.to_datetime(raw["timestamp"].str.strip(), errors="coerce", utc=True, format="mixed")
    values = pd.to_numeric(raw["value"], errors="coerce") * float(scale)
    ok = times.notna().to_numpy() & np.isfinite(values.to_numpy(dtype=float))
    series = pd.Series(values.to_numpy(dtype=float)[ok], index=pd.DatetimeIndex(times[ok], name="time"))
    series = series[~series.index.duplicated(keep="first")].sort_index()
    return series, len(raw) - len(series)


def documents(stream: Stream, values: pd.Series, settings: Settings) -> list[dict]:
    """One document per value, in the original shape (see the module doc for ``request_count``)."""
    cuts = settings.cuts()[stream.flag]
    docs = []
    for time, value in zip(values.index.to_pydatetime(), values.to_numpy(dtype=float)):
        if stream is REQUESTS:
            doc = to_document(stream, time, {"req_success": value, "req_fail": 0.0}, cuts)
            del doc["value_fail"]  # not in the CSV: missing, not zero
        else:
            doc = to_document(stream, time, {stream.columns[0]: value}, cuts)
        docs.append(doc)
    return docs


def import_csv(db, path: Path | str, stream_name: str, settings: Settings, scale: float = 1.0) -> ImportResult:
    """Load ``path`` into the stream ``stream_name`` (see the module doc)."""
    stream = stream_named(stream_name)
    if not np.isfinite(scale) or scale <= 0:
        raise CsvImportError(f"--scale must be a positive number, got {scale}")
    values, skipped = read_csv(path, scale)
    if values.empty:
        raise CsvImportError(f"{path}: no row has both a readable timestamp and a number")
    store.ensure_indexes(db)
    docs = documents(stream, values, settings)
    inserted = duplicates = 0
    for i in range(0, len(docs), BATCH):
        result = store.insert_idempotent(db, stream.collection, docs[i : i + BATCH])
        inserted += result.inserted
        duplicates += result.duplicates
    first, last = values.index[0].to_pydatetime(), values.index[-1].to_pydatetime()
    if settings.rollups:
        rollups.update(db, settings, values.index.min().to_pydatetime(), values.index.max().to_pydatetime(),
                       frames.service_cadence(db, settings))
    log.info("%s -> %s: %d rows, %d new, %d already stored, %d skipped (%s .. %s)",
             path, stream.collection, len(values), inserted, duplicates, skipped, first.isoformat(), last.isoformat())
    return ImportResult(stream.collection, len(values), inserted, duplicates, skipped, first, last)


__all__ = ["CsvImportError", "ImportResult", "parse_scale", "stream_named", "read_csv", "documents", "import_csv"]

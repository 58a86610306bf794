"""The collector's write-ahead file: samples are on disk (fsynced) before the database sees them.

One JSON line per document (``{"collection": ..., "doc": ...}``, datetimes as ``{"$date": iso}``).
A tick's documents are appended and fsynced, then written to the database; once the whole
file is stored it is emptied. A collector killed at any point (mid-outage, mid-write) loses
nothing the file held: the next run writes it again, and the unique ``time_series`` index drops
what was already stored.

The file has a size bound (``collector_spill_max_bytes``). Past it the **oldest** samples
(by sample time) are dropped, keeping the newest three quarters of the bound: after a long
database outage the recent data matters most, and the collector backfills the older part
from Prometheus, which keeps the raw series, once the database answers (telemetry/collector.py).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

log = logging.getLogger(__name__)
UTC = dt.timezone.utc

Document = dict[str, Any]
Item = tuple[str, Document]  # (collection, document)
#: Documents handed to the database per write when the file is replayed.
FLUSH_CHUNK = 5000
#: Share of the bound kept when the file is full (dropping a quarter at once keeps drops rare).
KEEP_WHEN_FULL = 0.75


def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"$date": value.astimezone(UTC).isoformat()}
    raise TypeError(f"cannot write {type(value).__name__} to the write-ahead file")


def _decode(obj: dict) -> Any:
    if obj.keys() == {"$date"}:
        return dt.datetime.fromisoformat(obj["$date"])
    return obj


def encode_line(item: Item) -> str:
    collection, doc = item
    return json.dumps({"collection": collection, "doc": doc}, default=_encode) + "\n"


def parse_lines(lines: Iterable[str], path: Path) -> list[Item]:
    items = []
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line, object_hook=_decode)
            items.append((record["collection"], record["doc"]))
        except (ValueError, KeyError, TypeError):
            # Only a crash mid-append can tear a line; the rest of the file is still good.
            log.warning("skipping an unreadable line in %s: %.80s", path, line)
    return items


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriteAheadLog:
    """Documents on their way to the database, in a JSONL file bounded to ``max_bytes``."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = Path(path)
        self.max_bytes = max(1, int(max_bytes))
        #: Samples dropped to stay within the bound since this object was made.
        self.dropped = 0
        #: True from the first drop until the file is emptied into the database.
        self.full = False
        self._count = 0
        self._bytes = 0
        if self.path.is_file():
            with self.path.open(encoding="utf-8") as f:
                self._count = sum(1 for line in f if line.strip())
            self._bytes = self.path.stat().st_size
            if self._count:
                log.info("%d samples from an earlier run wait in %s", self._count, self.path)

    def __len__(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def append(self, items: Sequence[Item]) -> int:
        """Append and fsync ``items``; returns how many old samples were dropped to stay within the bound."""
        if not items:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(encode_line(item) for item in items)
        with self.path.open("a", encoding="utf-8") as f:
            if self._ends_torn():
                text = "\n" + text  # end a line torn by a crash, or it would swallow our first one
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        self._count += len(items)
        self._bytes = self.path.stat().st_size
        return self._compact() if self._bytes > self.max_bytes else 0

    def flush(self, write: Callable[[str, list[Document]], int]) -> int:
        """Hand every waiting document to ``write(collection, docs)``, oldest line first, then empty the file.

        Returns what ``write`` reports stored. If ``write`` raises, the file is kept whole
        (the rewrite is idempotent) and the exception propagates.
        """
        if not self._count:
            return 0
        written = 0
        with self.path.open(encoding="utf-8") as f:
            for chunk in iter(lambda: list(itertools.islice(f, FLUSH_CHUNK)), []):
                written += write_grouped(write, parse_lines(chunk, self.path))
        with self.path.open("w", encoding="utf-8") as f:
            f.flush()
            os.fsync(f.fileno())
        self._count, self._bytes = 0, 0
        if self.full:
            log.info("%s is empty again: every waiting sample is stored (%d dropped while it was full)", self.path, self.dropped)
        self.full = False
        return written

    def _compact(self) -> int:
        """Keep the newest samples within ``KEEP_WHEN_FULL`` of the bound (atomic rewrite); return the number dropped."""
        with self.path.open(encoding="utf-8") as f:
            items = parse_lines(f, self.path)
        items.sort(key=lambda item: item[1].get("time_series") or dt.datetime.min.replace(tzinfo=UTC))
        budget = int(self.max_bytes * KEEP_WHEN_FULL)
        kept: list[str] = []
        size = 0
        for item in reversed(items):
            line = encode_line(item)
            if size + len(line) > budget:
                break
            kept.append(line)
            size += len(line)
        kept.reverse()
        dropped = len(items) - len(kept)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            f.write("".join(kept))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        self._count, self._bytes = len(kept), self.path.stat().st_size
        self.dropped += dropped
        if not self.full:
            log.warning(
                "%s is full (collector_spill_max_bytes = %d): dropping the oldest samples, keeping the newest; "
                "the collector backfills them from Prometheus once the database answers",
                self.path,
                self.max_bytes,
            )
        self.full = True
        return dropped

    def _ends_torn(self) -> bool:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return False
        with self.path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"


def write_grouped(write: Callable[[str, list[Document]], int], items: Sequence[Item]) -> int:
    """``write(collection, docs)`` once per collection, in order of first appearance; the sum of what it reports."""
    written = 0
    for collection in dict.fromkeys(c for c, _ in items):
        written += write(collection, [d for c, d in items if c == collection])
    return written


__all__ = ["FLUSH_CHUNK", "Item", "WriteAheadLog", "encode_line", "parse_lines", "write_grouped"]

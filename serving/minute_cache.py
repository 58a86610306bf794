"""Per-worker minute frames: the recent span kept current incrementally, closed hours memoised.

Reading samples is the slow part (on the embedded server ~0.1 s per stream-hour), and only
the newest minutes ever change, so a worker keeps:

- the *recent* frame (the last ``recent_minutes``, enough for the model's input window and
  the default health interval), brought up to date by re-reading only its last few minutes;
- *hour chunks* of older minutes, read once per closed hour and kept (LRU, with a TTL so a
  late replay of samples that waited in the collector's file is eventually seen).

Frames are :func:`telemetry.frames.minute_frame` frames: computing an hour on its own gives
exactly the minutes of computing a day (each minute's grid points only look back
``alignment_tolerance_s``), so the chunks join seamlessly.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict

import numpy as np
import pandas as pd
from pymongo.database import Database

from telemetry import store
from telemetry.catalogue import FLAG_NAMES, STREAM_COLUMNS
from telemetry.frames import Cadence, load_minute_frame
from telemetry.health import floor_step, step_index
from telemetry.services import DEFAULT_SERVICE, Service
from telemetry.settings import Settings

UTC = dt.timezone.utc
HOUR = pd.Timedelta(hours=1)
MICROSECOND = dt.timedelta(microseconds=1)
#: Minutes the recent frame keeps beyond a model's lookback (the minute under way, the status's look back).
RECENT_MARGIN_MINUTES = 10
#: The columns of a minute frame (telemetry.frames.minute_frame), in order.
FRAME_COLUMNS = [*STREAM_COLUMNS, "health", "coverage", *(f"flag_{name}" for name in FLAG_NAMES)]


class MinuteCache:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        recent_minutes: int = 180,
        overlap_minutes: int = 5,
        full_reload_s: float = 600.0,
        chunk_ttl_s: float = 900.0,
        max_chunks: int = 24 * 8,
        cadence: Cadence | None = None,
        service: Service = DEFAULT_SERVICE,
    ):
        self.db = db
        self.settings = settings
        #: Whose samples the frames are made of.
        self.service = service
        #: How samples become frames (telemetry.frames.Cadence): the step and the as-of tolerance.
        self.cadence = cadence or Cadence(1, settings.alignment_tolerance_s)
        self.recent_minutes = recent_minutes
        self.overlap = pd.Timedelta(minutes=overlap_minutes)
        self.full_reload_s = full_reload_s
        self.chunk_ttl_s = chunk_ttl_s
        self.max_chunks = max_chunks
        self._refresh_lock = threading.Lock()
        self._lock = threading.Lock()
        self._recent: pd.DataFrame | None = None
        self._recent_until: dt.datetime | None = None  # the ``now`` the recent frame was read up to
        self._recent_full_at = 0.0
        self._chunks: OrderedDict[pd.Timestamp, tuple[float, pd.DataFrame]] = OrderedDict()
        self._latest: dict[str, dt.datetime | None] = {}
        self._searched_until: dict[str, dt.datetime] = {}
        self._latest_full_at = -float("inf")
        #: The newest step's samples, as :meth:`latest_sample_times` last read them (for :meth:`refresh` at that now).
        self._window: store.SampleWindow | None = None

    @property
    def step_minutes(self) -> int:
        return self.cadence.step_minutes

    def set_cadence(self, cadence: Cadence) -> None:
        """Frame the data another way (a model made for another cadence was swapped in): forget every frame."""
        if cadence == self.cadence:
            return
        with self._refresh_lock, self._lock:
            self.cadence = cadence
            self._recent, self._recent_until = None, None
            self._chunks.clear()

    # --- the recent span ------------------------------------------------------
    def ensure_recent(self, lookback_minutes: int) -> None:
        """Keep at least the ``lookback_minutes`` a model's input window reads (and a margin) in the recent frame."""
        self.recent_minutes = max(self.recent_minutes, lookback_minutes + RECENT_MARGIN_MINUTES)

    def refresh(self, now: dt.datetime) -> pd.DataFrame:
        """Bring the recent frame up to ``now`` (re-reading only its newest minutes) and return it.

        Samples after ``now`` are ignored, so a frame never depends on when it was read.
        """
        start = pd.Timestamp(floor_step(now, self.step_minutes)) - pd.Timedelta(minutes=self.recent_minutes - self.step_minutes)
        with self._refresh_lock:
            window, self._window = self._window, None
            if window is not None and window.end != now + MICROSECOND:
                window = None
            recent, until = self._recent, self._recent_until
            full = (
                recent is None
                or until is None
                or now < until  # the clock went back (tests): nothing cached is valid
                or recent.index[-1] < start
                or time.monotonic() - self._recent_full_at > self.full_reload_s
            )
            if full:
                frame = load_minute_frame(self.db, start.to_pydatetime(), now, self.settings, self.cadence, self.service, window)
                self._recent_full_at = time.monotonic()
            else:
                tail_start = max(start, (recent.index[-1] - self.overlap).floor(f"{self.step_minutes}min"))
                tail = load_minute_frame(self.db, tail_start.to_pydatetime(), now, self.settings, self.cadence, self.service, window)
                kept = recent[(recent.index >= start) & (recent.index < tail_start)]
                frame = pd.concat([kept, tail]) if len(kept) else tail
            self._recent, self._recent_until = frame, now
        return frame

    def recent(self) -> pd.DataFrame | None:
        return self._recent

    @property
    def recent_until(self) -> dt.datetime | None:
        return self._recent_until

    # --- any interval ----------------------------------------------------------
    def frame(self, start: dt.datetime, end: dt.datetime, now: dt.datetime, max_age_s: float = 5.0) -> pd.DataFrame:
        """Frame of the steps ``floor(start) <= m < end``; steps after ``now`` are unknown (NaN).

        The recent part comes from the recent frame (re-read first if it is older than
        ``max_age_s``); older steps from hour chunks.
        """
        minutes = step_index(start, end, self.step_minutes)
        if not len(minutes):
            return self._empty(minutes)
        recent, until = self._recent, self._recent_until
        if recent is None or until is None or until > now or (now - until).total_seconds() > max_age_s:
            recent = self.refresh(now)
        recent_start = recent.index[0] if len(recent) else pd.Timestamp(floor_step(now, self.step_minutes))
        parts = []
        if minutes[0] < recent_start:
            parts.append(self._history(minutes[0], min(minutes[-1] + pd.Timedelta(minutes=self.step_minutes), recent_start), now))
        if minutes[-1] >= recent_start:
            parts.append(recent[(recent.index >= minutes[0]) & (recent.index <= minutes[-1])])
        frame = pd.concat([p for p in parts if len(p)]) if any(len(p) for p in parts) else self._empty(minutes)
        frame = frame[~frame.index.duplicated(keep="last")].reindex(minutes)
        frame["coverage"] = frame["coverage"].fillna(0.0)
        return frame

    @staticmethod
    def _empty(minutes: pd.DatetimeIndex) -> pd.DataFrame:
        frame = pd.DataFrame(np.nan, index=minutes, columns=FRAME_COLUMNS)
        frame["coverage"] = 0.0
        return frame

    def _history(self, start: pd.Timestamp, end: pd.Timestamp, now: dt.datetime) -> pd.DataFrame:
        """Minutes ``[start, end)`` (all before the recent span) from hour chunks, reading the missing hours."""
        hours = pd.date_range(start.floor("1h"), end - pd.Timedelta(microseconds=1), freq="1h")
        final_before = pd.Timestamp(now) - pd.Timedelta(minutes=10)
        found: dict[pd.Timestamp, pd.DataFrame] = {}
        with self._lock:
            clock = time.monotonic()
            for hour in hours:
                entry = self._chunks.get(hour)
                if entry and clock - entry[0] <= self.chunk_ttl_s:
                    self._chunks.move_to_end(hour)
                    found[hour] = entry[1]
        missing = [h for h in hours if h not in found]
        for run in _runs(missing):
            run_end = min(run[-1] + HOUR, pd.Timestamp(now))
            frame = load_minute_frame(self.db, run[0].to_pydatetime(), run_end.to_pydatetime(), self.settings, self.cadence, self.service)
            for hour in run:
                chunk = frame[(frame.index >= hour) & (frame.index < hour + HOUR)]
                found[hour] = chunk
                if hour + HOUR <= final_before:
                    self._remember(hour, chunk)
        chunks = [found[h] for h in hours]
        frame = pd.concat(chunks)
        return frame[(frame.index >= start) & (frame.index < end)]

    def _remember(self, hour: pd.Timestamp, chunk: pd.DataFrame) -> None:
        with self._lock:
            self._chunks[hour] = (time.monotonic(), chunk)
            self._chunks.move_to_end(hour)
            while len(self._chunks) > self.max_chunks:
                self._chunks.popitem(last=False)

    # --- what data there is -------------------------------------------------------
    def latest_sample_times(self, now: dt.datetime) -> dict[str, dt.datetime | None]:
        """The newest sample at or before ``now`` per stream, within ``max_interval_hours`` (None: none).

        The newest step's samples are read (from the as-of tolerance before it up to ``now``: what its frame row is
        computed from) and kept for :meth:`refresh` at the same ``now``, which then frames that step without reading
        them again; a stream with a sample there has its newest. For the others the search asks only about the
        minutes since the last search (back to the newest sample seen, or ``overlap`` before the last search for
        samples written late), which is one short index range. Every ``full_reload_s`` the search starts over, so
        history rewritten or replayed further back is seen, as the recent frame's full reload sees it. Every query is
        bounded (:func:`telemetry.store.newest_sample_time`): an open-ended lower bound, such as a newest sample
        from days before, made one query decode days of documents on the embedded server.
        """
        full = (
            time.monotonic() - self._latest_full_at > self.full_reload_s
            or any(t is not None and t > now for t in (*self._latest.values(), *self._searched_until.values()))
        )
        if full:  # the first search, a periodic one, or the clock went back (tests)
            self._latest.clear()
            self._searched_until.clear()
        step_from = floor_step(now, self.step_minutes) - dt.timedelta(seconds=self.cadence.tolerance_s)
        streams = self.settings.stream_set
        window = store.SampleWindow(step_from, now + MICROSECOND,
                                    store.read_samples(self.db, step_from, now + MICROSECOND, streams, self.service))
        out: dict[str, dt.datetime | None] = {}
        look_back = now - dt.timedelta(hours=self.settings.max_interval_hours)
        for stream in streams:
            name = stream.collection
            known = self._latest.get(name)
            searched = self._searched_until.get(name)
            floor = look_back if searched is None else max(searched - self.overlap, known or look_back, look_back)
            held = window.samples[name]
            if len(held):
                latest = held.index[-1].to_pydatetime()
            elif floor < step_from:  # none in the newest step: search before it
                latest = store.newest_sample_time(self.db, stream, before=step_from, after=floor, service=self.service) or known
            else:
                latest = known
            self._latest[name] = latest
            self._searched_until[name] = now
            out[name] = latest
        self._window = window
        if full:
            self._latest_full_at = time.monotonic()
        return out


def _runs(hours: list[pd.Timestamp]) -> list[list[pd.Timestamp]]:
    """Consecutive hours grouped, so each run is read with one query per stream."""
    runs: list[list[pd.Timestamp]] = []
    for hour in hours:
        if runs and hour - runs[-1][-1] == HOUR:
            runs[-1].append(hour)
        else:
            runs.append([hour])
    return runs

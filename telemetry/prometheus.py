"""A small client for Prometheus's HTTP API: instant queries and range queries.

Standard library only (urllib), so the collector stays as light as the rest of ``telemetry/``.
An empty result, NaN or an infinity is *missing data* (``None``, or no point), never 0:
``sum(...)/sum(...)`` over zero requests is NaN, and a metric nobody scraped has no series.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)
UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
#: Prometheus refuses a range query with more points than this per series.
MAX_POINTS_PER_QUERY = 11_000


class PrometheusError(RuntimeError):
    """A query did not produce a usable answer."""


class PrometheusUnavailable(PrometheusError):
    """Prometheus could not be reached or could not answer now (worth retrying)."""


class QueryError(PrometheusError):
    """Prometheus rejected the query, or its result cannot be one stream (retrying will not help)."""


@dataclass(frozen=True)
class Sample:
    """One value of an expression at one evaluation time (UTC, millisecond precision)."""

    time: dt.datetime
    value: float


def to_datetime(timestamp: float | str) -> dt.datetime:
    """A Prometheus timestamp (float seconds) -> a UTC datetime, rounded to the millisecond."""
    return EPOCH + dt.timedelta(milliseconds=round(float(timestamp) * 1000))


def to_timestamp(time: dt.datetime) -> str:
    """A timezone-aware datetime -> the API's float seconds, as text with millisecond precision."""
    if time.tzinfo is None:
        raise ValueError("query times must be timezone-aware (UTC)")
    millis = (time - EPOCH) // dt.timedelta(milliseconds=1)
    return f"{millis // 1000}.{millis % 1000:03d}"


def _value(raw: Any) -> float | None:
    """A sample value (a string such as "0.5", "NaN", "+Inf"), None unless finite."""
    value = float(raw)
    return value if math.isfinite(value) else None


def _sample(point: Any) -> Sample | None:
    """A ``[timestamp, "value"]`` pair -> a sample, None unless its value is finite."""
    value = _value(point[1])
    return None if value is None else Sample(to_datetime(point[0]), value)


class PrometheusClient:
    """Queries one Prometheus server. ``base_url`` may carry a path prefix (``http://h:9090/prom``)."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def query(self, expr: str, at: dt.datetime | None = None) -> Sample | None:
        """The expression's value at ``at`` (default: Prometheus's now); None when missing."""
        params = {"query": expr}
        if at is not None:
            params["time"] = to_timestamp(at)
        data = self._call("/api/v1/query", params)
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            points = [result]
        elif kind == "vector":
            points = [series["value"] for series in _one_series(expr, result)]
        else:
            raise QueryError(f"query {expr!r} returned a {kind}, not a number")
        return _sample(points[0]) if points else None

    def query_series(self, expr: str, at: dt.datetime) -> list[tuple[dict[str, str], Sample | None]]:
        """Every series of the expression at ``at``, with its labels (a value that is not finite: None)."""
        data = self._call("/api/v1/query", {"query": expr, "time": to_timestamp(at)})
        if data.get("resultType") != "vector":
            raise QueryError(f"query {expr!r} returned a {data.get('resultType')}, not a vector")
        return [(series.get("metric", {}), _sample(series["value"])) for series in data.get("result") or []]

    def query_range_series(
        self, expr: str, start: dt.datetime, end: dt.datetime, step_s: float
    ) -> list[tuple[dict[str, str], list[Sample]]]:
        """Every series of the expression at ``start, start + step, ... <= end``, with its labels; missing points left out.

        Long ranges are split like :meth:`query_range`'s; a series' points from several chunks are joined.
        """
        joined: dict[tuple, tuple[dict[str, str], list[Sample]]] = {}
        for labels, samples in self._range_series(expr, start, end, step_s):
            key = tuple(sorted(labels.items()))
            joined.setdefault(key, (labels, []))[1].extend(samples)
        return list(joined.values())

    def query_range(self, expr: str, start: dt.datetime, end: dt.datetime, step_s: float) -> list[Sample]:
        """The expression at ``start, start + step, ... <= end``; missing points are left out.

        Long ranges are split so that no request exceeds Prometheus's points limit.
        """
        samples: list[Sample] = []
        for series in self._range_series(expr, start, end, step_s, one=True):
            samples.extend(series[1])
        return samples

    def _range_series(
        self, expr: str, start: dt.datetime, end: dt.datetime, step_s: float, one: bool = False
    ) -> list[tuple[dict[str, str], list[Sample]]]:
        if step_s <= 0:
            raise ValueError("step_s must be positive")
        step = dt.timedelta(seconds=step_s)
        chunk = step * (MAX_POINTS_PER_QUERY - 1)
        out: list[tuple[dict[str, str], list[Sample]]] = []
        chunk_start = start
        while chunk_start <= end:
            chunk_end = min(end, chunk_start + chunk)
            out.extend(self._range_chunk(expr, chunk_start, chunk_end, step_s, one))
            chunk_start = chunk_end + step
        return out

    def ready(self) -> bool:
        """Whether the server answers ``/-/ready`` (it has loaded its storage and config)."""
        try:
            with urllib.request.urlopen(self.base_url + "/-/ready", timeout=self.timeout_s) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def _range_chunk(
        self, expr: str, start: dt.datetime, end: dt.datetime, step_s: float, one: bool
    ) -> list[tuple[dict[str, str], list[Sample]]]:
        params = {
            "query": expr,
            "start": to_timestamp(start),
            "end": to_timestamp(end),
            "step": f"{step_s:g}",
        }
        data = self._call("/api/v1/query_range", params)
        if data.get("resultType") != "matrix":
            raise QueryError(f"range query {expr!r} returned a {data.get('resultType')}, not a matrix")
        result = _one_series(expr, data.get("result")) if one else data.get("result") or []
        out = []
        for series in result:
            points = [_sample(point) for point in series.get("values", [])]
            out.append((series.get("metric", {}), [p for p in points if p is not None]))
        return out

    def _call(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        """POST a form (long PromQL fits in a body, not always in a URL); return the ``data`` field."""
        body = urllib.parse.urlencode(params).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=body,
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = json.load(response)
        except urllib.error.HTTPError as exc:
            raise _http_error(exc, params["query"]) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PrometheusUnavailable(f"Prometheus at {self.base_url} is unreachable ({reason})") from exc
        except ValueError as exc:
            raise PrometheusError(f"{self.base_url}{path} did not answer JSON; is it Prometheus?") from exc
        if payload.get("status") != "success":
            raise QueryError(f"query {params['query']!r} failed: {payload.get('error', payload)}")
        for warning in payload.get("warnings", []):
            log.warning("Prometheus warns about %r: %s", params["query"], warning)
        return payload.get("data") or {}


def _one_series(expr: str, result: Any) -> list[dict]:
    """A stream is one series: several would be silently mixed, so say how to fix the query."""
    result = result or []
    if len(result) > 1:
        raise QueryError(
            f"query {expr!r} returned {len(result)} series; aggregate it to one (e.g. sum(...) or avg(...))"
        )
    return result


def _http_error(exc: urllib.error.HTTPError, expr: str) -> PrometheusError:
    """400/422 are the query's fault; anything else (503 timeouts, proxies' 502) is transient."""
    try:
        detail = json.loads(exc.read().decode() or "{}").get("error", "")
    except (ValueError, OSError):
        detail = ""
    if exc.code in (400, 422):
        return QueryError(f"Prometheus rejected {expr!r} ({exc.code}): {detail or exc.reason}")
    return PrometheusUnavailable(f"Prometheus answered {exc.code} to {expr!r}: {detail or exc.reason}")


__all__ = [
    "PrometheusClient",
    "PrometheusError",
    "PrometheusUnavailable",
    "QueryError",
    "Sample",
    "to_datetime",
    "to_timestamp",
]

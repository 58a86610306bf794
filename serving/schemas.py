"""Every request and response of the API, as marshmallow schemas (the OpenAPI document is built from these).

"What does /api/v1/status return" is :class:`StatusSchema`; the compatibility routes of the
original service are at the end.
"""

from __future__ import annotations

import datetime as dt
import re

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from forecasting.contract import TARGETS
from serving.eta import CAUSES
from serving.status import STATES, UNKNOWN_REASONS
from telemetry.catalogue import FLAG_NAMES, STREAMS

UTC = dt.timezone.utc
EXAMPLE_TIME = "2026-03-01T12:00:00+00:00"


def _doc(description: str, example=None, **extra) -> dict:
    meta = {"description": description, **extra}
    if example is not None:
        meta["example"] = example
    return meta


# --- query parameters ------------------------------------------------------------------


class QueryDateTime(fields.AwareDateTime):
    """ISO-8601 with a UTC offset. A ``+`` left unencoded in a URL arrives as a space: put it back."""

    _SPACE_OFFSET = re.compile(r"^(\S+T[0-9:.]+) (\d{2}:?\d{2})$")

    default_error_messages = {
        "invalid": "Not an ISO-8601 date-time; use e.g. 2026-03-01T12:00:00Z.",
        "invalid_awareness": "Give a UTC offset, e.g. 2026-03-01T12:00:00Z or ...+01:00.",
        "range": "Out of range: between 1970 and 2200.",
    }
    EARLIEST = dt.datetime(1970, 1, 1, tzinfo=UTC)
    LATEST = dt.datetime(2200, 1, 1, tzinfo=UTC)

    def __init__(self, **kwargs):
        super().__init__(format="iso", **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            value = self._SPACE_OFFSET.sub(r"\1+\2", value.strip())
        try:
            value = super()._deserialize(value, attr, data, **kwargs).astimezone(UTC)
        except OverflowError:
            raise self.make_error("range") from None
        if not self.EARLIEST <= value < self.LATEST:
            raise self.make_error("range")
        return value


class StepField(fields.Field):
    """A whole number of minutes: ``5`` (minutes), ``5m``, ``5min``, ``300s``, ``1h`` or ISO-8601 ``PT5M``."""

    _SHORT = re.compile(r"^\s*(\d+)\s*(s|sec|m|min|h)?\s*$", re.IGNORECASE)
    _ISO = re.compile(r"^P(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)$", re.IGNORECASE)
    default_error_messages = {"invalid": "Not a step: use minutes (5), 5m, 1h, 300s or PT5M.",
                              "whole": "A step must be a whole number of minutes, at least 1."}

    def _deserialize(self, value, attr, data, **kwargs) -> int:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        seconds = None
        if m := self._SHORT.match(value):
            unit = (m.group(2) or "m").lower()
            seconds = int(m.group(1)) * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[unit]
        elif (m := self._ISO.match(value.strip())) and any(m.groups()):
            h, mi, s = (int(g or 0) for g in m.groups())
            seconds = h * 3600 + mi * 60 + s
        if seconds is None:
            raise self.make_error("invalid")
        if seconds < 60 or seconds % 60:
            raise self.make_error("whole")
        return seconds // 60


class NoQuerySchema(Schema):
    """No parameters: an unknown one is an error (422), never silently ignored."""


class IntervalQuerySchema(Schema):
    start = QueryDateTime(metadata=_doc("Interval start, ISO-8601 with a UTC offset (default: `end` minus one hour).", "2026-03-01T11:00:00Z"))
    end = QueryDateTime(metadata=_doc("Interval end, exclusive, ISO-8601 with a UTC offset (default: now).", "2026-03-01T12:00:00Z"))

    @validates_schema
    def _ordered(self, data, **kwargs):
        if "start" in data and "end" in data and data["end"] <= data["start"]:
            raise ValidationError("must be after start", field_name="end")


class HealthQuerySchema(IntervalQuerySchema):
    step = StepField(
        load_default=1,
        metadata=_doc("Bucket width: minutes (`5`), `5m`, `1h`, `300s` or ISO-8601 `PT5M`. Default 1 minute.", "5m", type="string", doc_default="1"),
    )


class ForecastQuerySchema(Schema):
    start = QueryDateTime(
        metadata=_doc(
            "First forecast minute, ISO-8601 with a UTC offset (default: now). In the past, the forecast is"
            " the one the model would have made at `start`, from the data before it.",
            "2026-03-01T12:00:00Z",
        )
    )
    end = QueryDateTime(metadata=_doc("End of the forecast, exclusive (default: `start` + the model's horizon).", "2026-03-01T15:00:00Z"))
    horizon = fields.Integer(
        validate=validate.Range(min=1, max=100_000),
        metadata=_doc("Instead of `end`: minutes to forecast from `start` (at most `max_horizon_hours` x 60).", 180),
    )

    @validates_schema
    def _consistent(self, data, **kwargs):
        if "horizon" in data and "end" in data:
            raise ValidationError("give either end or horizon, not both", field_name="horizon")
        if "start" in data and "end" in data and data["end"] <= data["start"]:
            raise ValidationError("must be after start", field_name="end")


# --- shared pieces ---------------------------------------------------------------------


class BandSchema(Schema):
    p10 = fields.Float(metadata=_doc("10th percentile (pessimistic for health).", 0.58))
    p50 = fields.Float(metadata=_doc("Median: the expected value.", 0.67))
    p90 = fields.Float(metadata=_doc("90th percentile.", 0.75))


#: Each health input's flag, named and described by the catalogue (telemetry/catalogue.py).
FlagsSchema = Schema.from_dict(
    {
        s.flag: fields.Float(allow_none=True, metadata=_doc(f"{s.flag_title} flag 0-3 (mean over the minute; null when unknown).", 1.0))
        for s in STREAMS
    },
    name="FlagsSchema",
)


# --- /api/v1/health ----------------------------------------------------------------------


class HealthPointSchema(Schema):
    time = fields.DateTime(format="iso", metadata=_doc("Bucket start (UTC).", EXAMPLE_TIME))
    health = fields.Float(
        allow_none=True,
        metadata=_doc("Mean health over the bucket's scored minutes, 0-1; null when no minute of it could be scored (never 1.0).", 0.67),
    )
    coverage = fields.Float(metadata=_doc("Share of the bucket's 5-second grid points where every configured stream was present, 0-1.", 0.98))
    failing = fields.Boolean(allow_none=True, metadata=_doc("Health at or below the failure threshold (null when unknown).", False))
    flags = fields.Nested(FlagsSchema, metadata=_doc("Mean flag of each health input over the bucket."))


class HealthSummarySchema(Schema):
    known_points = fields.Integer(metadata=_doc("Buckets with a known health.", 60))
    mean = fields.Float(allow_none=True, metadata=_doc("Mean of the known buckets' health.", 0.71))
    min = fields.Float(allow_none=True, metadata=_doc("Lowest known bucket health.", 0.33))
    failing_points = fields.Integer(metadata=_doc("Known buckets at or below the threshold.", 4))


class HealthSeriesSchema(Schema):
    start = fields.DateTime(format="iso", metadata=_doc("First bucket (the start, floored to the minute).", "2026-03-01T11:00:00+00:00"))
    end = fields.DateTime(format="iso", metadata=_doc("Interval end (exclusive).", EXAMPLE_TIME))
    step_seconds = fields.Integer(metadata=_doc("Bucket width in seconds.", 60))
    threshold = fields.Float(metadata=_doc("Failure threshold: health at or below it is a failure.", 0.3))
    summary = fields.Nested(HealthSummarySchema)
    points = fields.List(fields.Nested(HealthPointSchema), metadata=_doc("One per bucket, oldest first; missing buckets included (null health)."))


# --- /api/v1/forecast --------------------------------------------------------------------


#: One forecast minute: a band for health and for every stream column of the catalogue.
ForecastPointSchema = Schema.from_dict(
    {
        "time": fields.DateTime(format="iso", metadata=_doc("Forecast minute (UTC).", EXAMPLE_TIME)),
        "health": fields.Nested(BandSchema, metadata=_doc("Health 0-1.")),
        **{column: fields.Nested(BandSchema, metadata=_doc(text)) for s in STREAMS for column, text in s.descriptions.items()},
    },
    name="ForecastPointSchema",
)


class ForecastSchema(Schema):
    model_version = fields.String(metadata=_doc("Registry version that made the forecast.", "20260301T090000Z-1a2b3c"))
    origin = fields.DateTime(
        format="iso",
        metadata=_doc("Minute the forecast starts at; its inputs are the model's input window before it.", EXAMPLE_TIME),
    )
    start = fields.DateTime(format="iso", metadata=_doc("First minute returned.", EXAMPLE_TIME))
    end = fields.DateTime(format="iso", metadata=_doc("End of the forecast (exclusive).", "2026-03-01T15:00:00+00:00"))
    horizon_minutes = fields.Integer(metadata=_doc("Minutes forecast from the origin.", 180))
    model_horizon_minutes = fields.Integer(metadata=_doc("The model's own horizon H.", 180))
    rolled_forward = fields.Boolean(
        metadata=_doc(
            "True when the forecast runs past H: the median path was fed back as if observed, so the bands of"
            " the rolled part are conditional on it and narrower than the truth.",
            False,
        )
    )
    quantiles = fields.List(fields.Float(), metadata=_doc("The model's quantile levels (bands are P10/P50/P90 of these).", [0.1, 0.5, 0.9]))
    input_coverage = fields.Float(metadata=_doc("Share of the input window's minutes with an observed health, 0-1.", 1.0))
    threshold = fields.Float(metadata=_doc("Failure threshold.", 0.3))
    points = fields.List(fields.Nested(ForecastPointSchema), metadata=_doc("One per minute from start to end."))


# --- /api/v1/status ----------------------------------------------------------------------


class CurrentSchema(Schema):
    minute = fields.DateTime(format="iso", metadata=_doc("The newest minute with a known health (may still be filling).", EXAMPLE_TIME))
    health = fields.Float(allow_none=True, metadata=_doc("Observed health of that minute; null when unknown (stale or no data).", 0.67))
    coverage = fields.Float(metadata=_doc("Share of that minute's grid points scored so far.", 1.0))
    flags = fields.Nested(FlagsSchema, metadata=_doc("Observed flag of each health input in that minute."))


class PredictedCurrentSchema(BandSchema):
    minute = fields.DateTime(format="iso", metadata=_doc("Same minute as `current.minute`.", EXAMPLE_TIME))


class CrossingSchema(Schema):
    at = fields.DateTime(format="iso", metadata=_doc(
        "First minute that fails: health at or below the threshold, or memory at `memory_exhaustion` (see `cause`).",
        "2026-03-01T12:42:00+00:00"))
    seconds = fields.Float(metadata=_doc("Seconds from `as_of` to `at` (0 when failing now).", 2520.0))
    cause = fields.String(
        validate=validate.OneOf(CAUSES),
        metadata=_doc(
            "Why that minute fails: `health` (the health path at or below the threshold) or `memory_exhaustion` (the "
            "memory floor's trend reaches the `memory_exhaustion` share of the heap: the app runs out of heap; an "
            "addition to health's definition, docs/health.md). The earliest of the two wins, bound by bound.",
            "health",
        ),
    )


class TimeToFailureSchema(Schema):
    expected = fields.Nested(
        CrossingSchema, allow_none=True, metadata=_doc("Where the P50 (median) health path crosses the threshold; null: not within the horizon.")
    )
    earliest = fields.Nested(
        CrossingSchema, allow_none=True, metadata=_doc("Where the P10 path crosses: the pessimistic end of the range. May exist when `expected` does not (a risk).")
    )
    latest = fields.Nested(
        CrossingSchema, allow_none=True, metadata=_doc("Where the P90 path crosses: the optimistic end; null: not within the horizon.")
    )


class HorizonSchema(Schema):
    minutes = fields.Integer(metadata=_doc("Minutes the model looked ahead.", 180))
    end = fields.DateTime(format="iso", metadata=_doc("End of the horizon.", "2026-03-01T15:00:00+00:00"))


class DriverSchema(Schema):
    stream = fields.String(validate=validate.OneOf(FLAG_NAMES), metadata=_doc("Health input.", "memory"))
    flag_before = fields.Float(allow_none=True, metadata=_doc("Its flag now (failing now: in the last healthy minute).", 1.0))
    flag_at = fields.Float(allow_none=True, metadata=_doc("Its flag at `driver_minute` (forecast: from the P50 stream forecasts).", 3.0))
    contribution = fields.Float(allow_none=True, metadata=_doc("Health it takes away at `driver_minute`: flag / 12.", 0.25))
    change = fields.Float(allow_none=True, metadata=_doc("Change of that contribution since before: (flag_at - flag_before) / 12.", 0.1667))


class DataFreshnessSchema(Schema):
    latest_sample = fields.DateTime(format="iso", allow_none=True, metadata=_doc("Newest sample of any stream.", "2026-03-01T12:00:41+00:00"))
    stale = fields.Boolean(metadata=_doc("A stream has been silent longer than `staleness_limit_s`.", False))
    stale_since = fields.DateTime(format="iso", allow_none=True, metadata=_doc("Last sample of the longest-silent stream.", None))
    stale_streams = fields.List(fields.String(), metadata=_doc("Collections silent beyond the limit.", []))


class TrainedOnSchema(Schema):
    start = fields.DateTime(format="iso", metadata=_doc("First minute of the history the model was fitted on.", "2026-02-22T09:00:00+00:00"))
    end = fields.DateTime(format="iso", metadata=_doc("End of that history (exclusive).", "2026-03-01T09:00:00+00:00"))
    minutes = fields.Integer(metadata=_doc("Minutes of history.", 10080))


class QualitySchema(Schema):
    horizon_minutes = fields.Integer(metadata=_doc("Leads the scores cover (the first minutes of each window).", 60))
    health_mae = fields.Float(allow_none=True, metadata=_doc(
        "Health MAE of its median on those leads: what its training run judged it on (null: a model from before it was recorded).", 0.028))
    health_rmse = fields.Float(allow_none=True, metadata=_doc("Health RMSE of its median on those leads.", 0.041))
    coverage = fields.Float(allow_none=True, metadata=_doc("Share of observed health inside its P10-P90 band (nominal 0.8).", 0.79))
    held_back = fields.Boolean(metadata=_doc(
        "True: measured on held-back windows its run never fitted on; false: on the data it was fitted on (a first model of a short history).",
        True))


class ModelStateSchema(Schema):
    version = fields.String(allow_none=True, metadata=_doc("Version serving forecasts (null: none loaded).", "20260301T090000Z-lstm-1a2b3c"))
    wanted = fields.String(allow_none=True, metadata=_doc(
        "Version the registry's `current` points at (a service with an assignment: its assigned version).", "20260301T090000Z-lstm-1a2b3c"))
    problem = fields.String(allow_none=True, metadata=_doc("Why `wanted` is not served (missing or corrupt); null when all is well.", None))
    assigned = fields.Boolean(metadata=_doc(
        "True: this service's own model, which its fleet training run found serves it measurably better than the fleet's "
        "`current` model (`GET /api/v1/models`: `assignments`); false: the fleet's model.", False))
    kind = fields.String(allow_none=True, metadata=_doc(
        "What the serving model is: the winner of its training run (`lstm`, `finetuned`: the pretrained base model fine-tuned "
        "on this service, `base`: the base model zero-shot, `blend`: the base model and damped ETS averaged, or a baseline: "
        "`seasonal_naive`, `ets`); `base` with no "
        "`wanted` version: the registry is empty and the shipped base model serves zero-shot.", "lstm"))
    trained_on = fields.Nested(TrainedOnSchema, allow_none=True, metadata=_doc("The history it was fitted on."))
    quality = fields.Nested(QualitySchema, allow_none=True, metadata=_doc("How it scored in its training run (null: not recorded)."))


class HealthRuleSchema(Schema):
    streams = fields.List(fields.String(), metadata=_doc(
        "The service's streams (setting `streams`): health is scored from these, and only these.", ["cpu", "memory", "requests", "response_time"]))
    formula = fields.String(metadata=_doc(
        "Health = 1 - sum of their flags / (3 x their number): with all four the original's / 12; with fewer, one stream at "
        "flag 3 takes away more health, so a value means something else (docs/health.md).",
        "1 - (cpu + memory + request_rate + response_time flags) / 12"))
    step_minutes = fields.Integer(metadata=_doc("Minutes per frame step (1; or the data's own step, e.g. 5, for coarse data).", 1))


class StatusSchema(Schema):
    state = fields.String(
        validate=validate.OneOf(STATES),
        metadata=_doc(
            "`failure_predicted`: the P50 health path crosses the threshold within the horizon, or memory is expected"
            " to reach `memory_exhaustion` of the heap within it (`time_to_failure.expected.cause`);"
            " `failing_now`: the current minute is at or below it; `no_failure_within_horizon`: the P50 path stays"
            " above it for the whole horizon; `unknown`: see `reason`.",
            "failure_predicted",
        ),
    )
    reason = fields.String(
        allow_none=True,
        validate=validate.OneOf(UNKNOWN_REASONS),
        metadata=_doc("Why the state is unknown: `no_data`, `insufficient_data` (too little history for a first model: `detail` says how much there is and how much is needed), `stale_data`, `no_model`, `model_error` (null otherwise).", None),
    )
    detail = fields.String(metadata=_doc("One human sentence.", "health is expected to cross 0.3 at 12:42 UTC (in 42 min)"))
    as_of = fields.DateTime(format="iso", metadata=_doc("When this status was computed (it is recomputed when new samples arrive).", "2026-03-01T12:00:45+00:00"))
    threshold = fields.Float(metadata=_doc("Failure threshold.", 0.3))
    current = fields.Nested(CurrentSchema)
    predicted_current = fields.Nested(
        PredictedCurrentSchema,
        allow_none=True,
        metadata=_doc("What the model forecast for `current.minute` from the input window before it (null without a model)."),
    )
    time_to_failure = fields.Nested(TimeToFailureSchema, allow_none=True, metadata=_doc("Null when the state is unknown."))
    horizon = fields.Nested(HorizonSchema, allow_none=True, metadata=_doc("How far the forecast looked (null without a forecast)."))
    driver = fields.String(
        allow_none=True,
        metadata=_doc("The health input whose contribution rises most by `driver_minute` (ties: the largest contribution).", "memory"),
    )
    driver_minute = fields.DateTime(
        format="iso",
        allow_none=True,
        metadata=_doc("Minute the drivers are read at: the crossing, the current minute when failing now, else the worst forecast minute.", "2026-03-01T12:42:00+00:00"),
    )
    drivers = fields.List(fields.Nested(DriverSchema), metadata=_doc("Every health input, the driver first."))
    data = fields.Nested(DataFreshnessSchema)
    model = fields.Nested(ModelStateSchema)
    health = fields.Nested(HealthRuleSchema, metadata=_doc("How health is scored for this service."))


STATUS_EXAMPLE = {
    "state": "failure_predicted",
    "reason": None,
    "detail": "health is expected to cross 0.3 at 2026-03-01T12:42:00+00:00 (in 41 min 15 s)",
    "as_of": "2026-03-01T12:00:45+00:00",
    "threshold": 0.3,
    "current": {"minute": EXAMPLE_TIME, "health": 0.5833, "coverage": 1.0,
                "flags": {"cpu": 2.0, "memory": 2.0, "request_rate": 1.0, "response_time": 0.0}},
    "predicted_current": {"minute": EXAMPLE_TIME, "p10": 0.5, "p50": 0.5833, "p90": 0.6667},
    "time_to_failure": {
        "expected": {"at": "2026-03-01T12:42:00+00:00", "seconds": 2475.0, "cause": "health"},
        "earliest": {"at": "2026-03-01T12:31:00+00:00", "seconds": 1815.0, "cause": "health"},
        "latest": None,
    },
    "horizon": {"minutes": 180, "end": "2026-03-01T15:00:00+00:00"},
    "driver": "memory",
    "driver_minute": "2026-03-01T12:42:00+00:00",
    "drivers": [
        {"stream": "memory", "flag_before": 2.0, "flag_at": 3.0, "contribution": 0.25, "change": 0.0833},
        {"stream": "cpu", "flag_before": 2.0, "flag_at": 3.0, "contribution": 0.25, "change": 0.0833},
        {"stream": "response_time", "flag_before": 0.0, "flag_at": 1.0, "contribution": 0.0833, "change": 0.0833},
        {"stream": "request_rate", "flag_before": 1.0, "flag_at": 1.0, "contribution": 0.0833, "change": 0.0},
    ],
    "data": {"latest_sample": "2026-03-01T12:00:43+00:00", "stale": False, "stale_since": None, "stale_streams": []},
    "model": {"version": "20260301T090000Z-lstm-1a2b3c", "wanted": "20260301T090000Z-lstm-1a2b3c", "problem": None, "kind": "lstm",
              "trained_on": {"start": "2026-02-22T09:00:00+00:00", "end": "2026-03-01T09:00:00+00:00", "minutes": 10080},
              "quality": {"horizon_minutes": 60, "health_mae": 0.028, "health_rmse": 0.041, "coverage": 0.79, "held_back": True}},
    "health": {"streams": ["cpu", "memory", "requests", "response_time"],
               "formula": "1 - (cpu + memory + request_rate + response_time flags) / 12", "step_minutes": 1},
}


# --- models and training -------------------------------------------------------------------


# --- services and the fleet ------------------------------------------------------------


class FleetQuerySchema(Schema):
    state = fields.String(
        validate=validate.OneOf(STATES),
        metadata=_doc("Only the services in this state.", "failure_predicted"),
    )


class StreamRangeSchema(Schema):
    stream = fields.String(metadata=_doc("Collection of the stream.", "cpu_usage"))
    first = fields.DateTime(format="iso", metadata=_doc("Its oldest sample.", "2026-02-22T12:00:00+00:00"))
    last = fields.DateTime(format="iso", metadata=_doc("Its newest sample.", EXAMPLE_TIME))


class DataRangeSchema(Schema):
    first = fields.DateTime(format="iso", metadata=_doc("Oldest sample of any stream.", "2026-02-22T12:00:00+00:00"))
    last = fields.DateTime(format="iso", metadata=_doc("Newest sample of any stream.", EXAMPLE_TIME))


class ServiceSchema(Schema):
    name = fields.String(metadata=_doc("Service name (the samples' `service` field).", "svc-01"))
    default = fields.Boolean(metadata=_doc(
        "The default service: the one samples without a `service` field belong to, that `/api/v1/status` answers for.", False))
    streams = fields.List(fields.Nested(StreamRangeSchema), metadata=_doc("Its streams, each with its data range."))
    data = fields.Nested(DataRangeSchema, metadata=_doc("The span of its data."))
    state = fields.String(validate=validate.OneOf(STATES), metadata=_doc("Its status's state (`GET /api/v1/services/{service}/status`).", "no_failure_within_horizon"))
    reason = fields.String(allow_none=True, validate=validate.OneOf(UNKNOWN_REASONS), metadata=_doc("Why the state is unknown (null otherwise).", None))


class ServiceListSchema(Schema):
    count = fields.Integer(metadata=_doc("Services listed.", 20))
    services = fields.List(fields.Nested(ServiceSchema), metadata=_doc("Every service with samples, by name."))


class FleetEntrySchema(Schema):
    service = fields.String(metadata=_doc("Service name.", "svc-07"))
    state = fields.String(validate=validate.OneOf(STATES), metadata=_doc("As in its status.", "failure_predicted"))
    reason = fields.String(allow_none=True, validate=validate.OneOf(UNKNOWN_REASONS), metadata=_doc("Why the state is unknown (null otherwise).", None))
    detail = fields.String(metadata=_doc("One human sentence, as in its status.", "health is expected to cross 0.3 at 12:42 UTC (in 42 min)"))
    health = fields.Float(allow_none=True, metadata=_doc("Observed health of its newest scored minute (null when unknown).", 0.58))
    minute = fields.DateTime(format="iso", allow_none=True, metadata=_doc("That minute.", EXAMPLE_TIME))
    time_to_failure = fields.Nested(TimeToFailureSchema, allow_none=True, metadata=_doc("As in its status; null when the state is unknown."))
    driver = fields.String(allow_none=True, metadata=_doc("The health input driving the change, as in its status.", "memory"))
    as_of = fields.DateTime(format="iso", allow_none=True, metadata=_doc("When its status was computed.", "2026-03-01T12:00:45+00:00"))


class FleetSchema(Schema):
    as_of = fields.DateTime(format="iso", metadata=_doc("When this list was put together.", "2026-03-01T12:00:46+00:00"))
    threshold = fields.Float(metadata=_doc("Failure threshold.", 0.3))
    count = fields.Integer(metadata=_doc("Services listed (after the `state` filter).", 20))
    services = fields.List(fields.Nested(FleetEntrySchema), metadata=_doc(
        "Soonest failure first: `failing_now` (by name), then `failure_predicted` by expected seconds, then by earliest"
        " seconds (a missing bound after every known one), then `no_failure_within_horizon` by name, `unknown` last by name."))


class ModelSummarySchema(Schema):
    version = fields.String(metadata=_doc("Registry version name (sortable by time).", "20260301T090000Z-1a2b3c"))
    created_at = fields.String(metadata=_doc("ISO-8601 UTC.", "2026-03-01T09:00:00+00:00"))
    status = fields.String(metadata=_doc("`candidate`, `promoted` or `rejected`.", "promoted"))
    reason = fields.String(metadata=_doc("Why it was promoted or rejected.", "beats the current model on the test split"))
    current = fields.Boolean(metadata=_doc("The registry's `current` points at it.", True))
    serving = fields.Boolean(metadata=_doc("This API instance is serving it.", True))
    input_minutes = fields.Integer(metadata=_doc("Input window L, minutes.", 120))
    horizon_minutes = fields.Integer(metadata=_doc("Horizon H, minutes.", 180))
    quantiles = fields.List(fields.Float(), metadata=_doc("Quantile levels.", [0.1, 0.5, 0.9]))
    kind = fields.String(metadata=_doc("What the model is: `lstm`, `finetuned`, `blend`, `base`, `seasonal_naive` or `ets` (every kind runs through the same ONNX contract).", "lstm"))
    run_id = fields.String(allow_none=True, metadata=_doc("The training run that made it (see `runs`).", "6650f1c0ffee0000000000ab"))
    health_source = fields.String(metadata=_doc("`direct`: the model forecasts health; `derived`: scored from its forecast streams; `mean`: the two averaged.", "direct"))
    flag_spread = fields.Dict(keys=fields.String(), values=fields.Float(), metadata=_doc(
        "Per health input, the spread of a minute's samples about its value that derived health scores its flags with "
        "(fitted on the service's minutes; empty: the hard cuts).", {"cpu": 0.015, "memory": 0.06}))
    metrics = fields.Dict(metadata=_doc(
        "Scores from training (see the model card); `scores`: what its run judged it on (held-back windows).",
        {"scores": {"horizon_minutes": 60, "health_mae": 0.03, "health_rmse": 0.044, "coverage": 0.8, "episodes": 12, "warned": 11, "false_alarms": 0}},
    ))


class CandidateSchema(Schema):
    kind = fields.String(metadata=_doc("Model kind.", "ets"))
    version = fields.String(metadata=_doc("Its registry version.", "20260301T090000Z-ets-1a2b3c"))
    champion = fields.Boolean(metadata=_doc("It was the current model when the run judged.", False))
    scores = fields.Dict(metadata=_doc(
        "On the run's held-back windows: health MAE (what the run judges accuracy on) and RMSE, and P10-P90 coverage over the first `horizon_minutes`, failure episodes warned ahead, false alarms.",
        {"horizon_minutes": 60, "health_mae": 0.024, "health_rmse": 0.033, "coverage": 0.81, "episodes": 4, "warned": 4, "false_alarms": 0}))
    eligible = fields.Boolean(metadata=_doc("It passed every gate.", True))
    gate_failures = fields.List(fields.String(), metadata=_doc("Gates it failed.", []))
    verdict = fields.String(metadata=_doc("`promoted`, `kept`, `replaced`, `lost` or `refused`.", "promoted"))
    why = fields.String(metadata=_doc("Why.", "ets beats the champion lstm ..."))


class TrainingRunSchema(Schema):
    run_id = fields.String(metadata=_doc("The run's id (its `training_runs` record).", "6650f1c0ffee0000000000ab"))
    created_at = fields.String(metadata=_doc("When its last version was written (ISO-8601 UTC).", "2026-03-01T09:00:00+00:00"))
    plan = fields.String(metadata=_doc("`full` (the LSTM's split), `short` (hours of history) or `fit only` (nothing held back yet).", "full"))
    season_minutes = fields.Integer(allow_none=True, metadata=_doc("The season found in the history (null: none).", 60))
    winner = fields.String(allow_none=True, metadata=_doc("Version promoted (null: the champion stayed).", None))
    reason = fields.String(metadata=_doc("The decision in one sentence.", "the champion (lstm) is this run's best; it stays"))
    candidates = fields.List(fields.Nested(CandidateSchema), metadata=_doc("Every candidate, the champion first when it was not one of them."))
    failed = fields.List(fields.Dict(), metadata=_doc("Kinds that were not trained (too little history) or failed, and why.", []))


class AssignmentSchema(Schema):
    version = fields.String(metadata=_doc("The version that serves the service.", "20260301T090000Z-ets-4d5e6f"))
    kind = fields.String(metadata=_doc("Its kind.", "ets"))
    reason = fields.String(metadata=_doc("Why: its scores against the fleet's model on the service's held-back block.", ""))
    serving = fields.String(allow_none=True, metadata=_doc("Version this instance serves the service with (null: not loaded).", None))


class AssignmentsSchema(Schema):
    champion = fields.String(metadata=_doc("The `current` version they were decided against.", "20260301T090000Z-lstm-1a2b3c"))
    active = fields.Boolean(metadata=_doc(
        "True while `current` still names `champion`; false after a rollback or activation of another version: every "
        "service is then served by `current`.", True))
    run_id = fields.String(allow_none=True, metadata=_doc("The training run that decided them.", None))
    decided_at = fields.String(metadata=_doc("When (ISO-8601 UTC).", "2026-03-01T09:00:00+00:00"))
    services = fields.Dict(keys=fields.String(), values=fields.Nested(AssignmentSchema), metadata=_doc(
        "Service -> the model that serves it; a service not listed is served by `current`."))


class ModelListSchema(Schema):
    current = fields.String(allow_none=True, metadata=_doc("Version `current` points at.", "20260301T090000Z-lstm-1a2b3c"))
    serving = fields.String(allow_none=True, metadata=_doc("Version this instance serves.", "20260301T090000Z-lstm-1a2b3c"))
    problem = fields.String(allow_none=True, metadata=_doc("Why they differ, if they do.", None))
    models = fields.List(fields.Nested(ModelSummarySchema), metadata=_doc("Every readable version, oldest first."))
    runs = fields.List(fields.Nested(TrainingRunSchema), metadata=_doc("The training runs behind them, newest first, with every candidate."))
    assignments = fields.Nested(AssignmentsSchema, allow_none=True, metadata=_doc(
        "The services a fleet run assigned another model than `current` (null: none recorded)."))


class ModelCardSchema(ModelSummarySchema):
    features = fields.List(fields.String(), metadata=_doc("Input channels, in order.", ["cpu", "memory"]))
    targets = fields.List(fields.String(), metadata=_doc("Output channels, in order.", list(TARGETS)))
    scaling = fields.Dict(metadata=_doc("Per-target scaling fitted on the training data.", {"channels": ["cpu"], "mean": [0.3], "std": [0.2], "log1p": [False]}))
    data_range = fields.Dict(metadata=_doc("Training data span.", {"start": "2026-02-22T09:00:00+00:00", "end": "2026-03-01T09:00:00+00:00"}))
    training = fields.Dict(metadata=_doc("How it was trained.", {"epochs": 30}))
    selection = fields.Dict(metadata=_doc("The training run that made it: every candidate, its scores and verdict (as in `runs`).", {}))
    calibration = fields.Dict(metadata=_doc(
        "Offsets added to the health quantiles (split-conformal, per lead and quantile, fitted on the validation windows); empty: none.",
        {"health": {"method": "split-conformal per quantile and lead", "validation_windows": 1212, "offsets": [[-0.004, 0.001, 0.006]]}},
    ))
    format_version = fields.Integer(metadata=_doc("Registry format.", 1))
    onnx = fields.Dict(metadata=_doc("ONNX input and output names.", {"input": "window", "output": "quantiles"}))


class TrainRequestSchema(Schema):
    request_id = fields.String(metadata=_doc("Id of the filed request.", "65f1c0ffee0000000000abcd"))
    message = fields.String(metadata=_doc("What happens next.", "training requested: the scheduler picks it up on its next poll"))


# --- operations ------------------------------------------------------------------------


class LivezSchema(Schema):
    status = fields.String(metadata=_doc("Always `ok` while the process answers.", "ok"))


class CheckSchema(Schema):
    ok = fields.Boolean(metadata=_doc("This dependency is usable.", True))
    detail = fields.String(metadata=_doc("What was found.", "database answers"))


class ModelCheckSchema(CheckSchema):
    version = fields.String(allow_none=True, metadata=_doc("Model serving forecasts.", "20260301T090000Z-1a2b3c"))
    wanted = fields.String(allow_none=True, metadata=_doc("Model `current` points at.", "20260301T090000Z-1a2b3c"))
    problem = fields.String(allow_none=True, metadata=_doc("Missing or corrupt pointed model (the last good one keeps serving).", None))


class ReadyzChecksSchema(Schema):
    database = fields.Nested(CheckSchema)
    model = fields.Nested(ModelCheckSchema)


class ReadyzSchema(Schema):
    ready = fields.Boolean(metadata=_doc("Database reachable and a model loaded.", True))
    checks = fields.Nested(ReadyzChecksSchema)


class ErrorSchema(Schema):
    code = fields.Integer(required=True, metadata=_doc("HTTP status code.", 422))
    status = fields.String(required=True, metadata=_doc("HTTP status name.", "Unprocessable Entity"))
    message = fields.String(required=True, metadata=_doc("What went wrong, in words (validation errors: the fields' first messages).", "end: must be after start"))
    errors = fields.Dict(metadata=_doc("Per location and field: the messages.", {"query": {"end": ["must be after start"]}}))


# --- the original service's routes (its dashboard keeps working) ---------------------------


class HoursPathSchema(Schema):
    hours = fields.Float(
        required=True,
        validate=validate.Range(min=0, min_inclusive=False),
        metadata=_doc("Hours (a positive number).", 3),
    )


class CompatHealthRowSchema(Schema):
    time_series = fields.String(metadata=_doc("Minute, ISO-8601 UTC with milliseconds.", "2026-03-01T12:00:00.000Z"))
    health = fields.Float(allow_none=True, metadata=_doc("Health 0-1; null when unknown.", 0.6667))


class CompatHealthDataSchema(Schema):
    data = fields.List(fields.Nested(CompatHealthRowSchema))


class CompatPredictionRowSchema(Schema):
    index = fields.String(metadata=_doc("Forecast minute, ISO-8601 UTC with milliseconds.", "2026-03-01T12:01:00.000Z"))
    predicted_mean = fields.Float(metadata=_doc("P50 health.", 0.6667))


class CompatPredictedDataSchema(Schema):
    remaining_time = fields.Integer(
        metadata=_doc("Whole seconds until the P50 health path crosses the threshold; 0 = no failure predicted (as in the original).", 2520)
    )
    data = fields.List(fields.Nested(CompatPredictionRowSchema))


class CompatCurrentHealthSchema(Schema):
    current_health = fields.Float(allow_none=True, metadata=_doc("Observed health of the newest minute; null when unknown.", 0.6667))
    predicted_current_health = fields.Float(allow_none=True, metadata=_doc("P50 forecast for that minute; null without a model.", 0.6512))
    predicted_remaining_time = fields.Integer(
        metadata=_doc("Whole seconds until the P50 health path crosses the threshold (at least 1 while failing); 0 = no failure predicted.", 2520)
    )

"""The one typed settings object, read once at start-up.

Precedence, lowest to highest: the defaults below, a TOML config file
(``PYCEMAKER_CONFIG`` or ``./pycemaker.toml``), environment variables
(``PYCEMAKER_<FIELD NAME IN CAPITALS>``, plus ``MONGO_URI``), then CLI flags
(applied by the CLI with :func:`dataclasses.replace`).

Secrets (``api_token``, ``mongo_uri``) may also come from a file named by
``PYCEMAKER_API_TOKEN_FILE`` / ``MONGO_URI_FILE`` (Docker and Kubernetes secrets), and only
from there or the environment: a config file holding a token, or a URI with a password, is refused.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

ENV_PREFIX = "PYCEMAKER_"
# Settings whose environment variable has no prefix (the ecosystem's own names).
UNPREFIXED_ENV = {"mongo_uri": "MONGO_URI"}
SECRET_FIELDS = ("api_token", "mongo_uri")
#: The model kinds a training run can fit (training/candidates.py).
CANDIDATE_KINDS = ("seasonal_naive", "ets", "base", "blend", "finetuned", "lstm")
#: The shipped base model (``pycemaker pretrain``): models/base/ beside this package.
REPO_BASE_MODELS_DIR = Path(__file__).resolve().parents[1] / "models" / "base"


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


@dataclass(frozen=True)
class Settings:
    # --- MongoDB ---------------------------------------------------------
    #: Production: a real MongoDB. Unset: the embedded SecantusDB server.
    mongo_uri: str | None = None
    database: str = "pycemaker"
    #: Data directory of the embedded server (used only without MONGO_URI).
    data_dir: Path = Path("var/db")
    #: Loopback port the embedded server listens on, so every process finds it.
    embedded_port: int = 27217
    #: Server selection / connect timeout: a database that is down fails fast.
    mongo_timeout_ms: int = 2000
    #: Keep per-step frame rows (collection ``rollups``, telemetry/rollups.py) as samples are written, and read
    #: frames from them (the same frames as from the raw samples, much faster). Off: neither written nor read.
    rollups: bool = True

    # --- The service's streams ----------------------------------------------
    #: Which of the catalogue's streams this service has (cpu, memory, requests, response_time): health is
    #: scored from these (docs/health.md), and one that never arrives is reported by name.
    streams: tuple[str, ...] = ("cpu", "memory", "requests", "response_time")
    #: Minutes per frame step (0: follow the data: a minute for streams scraped at least once a minute, the
    #: series' own spacing for coarser data, such as 5 for 5-minute CloudWatch exports).
    frame_minutes: int = 0
    #: Seconds between two scrapes of a stream (0: follow the data). Samples count at grid points up to
    #: 1.5 scrape intervals later (``alignment_tolerance_s`` at the least); see telemetry/frames.py.
    scrape_interval_s: float = 0.0

    # --- Services -------------------------------------------------------------
    #: The service that samples without a ``service`` field belong to (the seed's documents, the collector's):
    #: the one ``/api/v1/status``, ``/health``, ``/forecast`` and the original routes answer for.
    default_service: str = "default"
    #: Most services one API worker keeps a status for (each holds its recent minutes in memory).
    max_services: int = 1000
    #: Most services ``/metrics`` labels (soonest to fail first): bounds the series Prometheus stores.
    metrics_services: int = 100
    #: How far back an API worker's first scan for services reads (each later scan reads only the samples since
    #: the last): a service silent for longer is not listed, and its data range starts within this span.
    services_scan_hours: float = 24.0
    #: Seconds between two scans for services and their data ranges (only the span since the last scan is read).
    services_refresh_s: float = 30.0
    #: Split the fleet between API processes (serving/replicas.py): each recomputes only its rendezvous-hash share of
    #: the services, writes those statuses to the ``statuses`` collection and serves the others' from there. Off: every
    #: process computes every service.
    replica_split: bool = False
    #: Seconds between two heartbeats of a replica (it also re-reads the live set and the others' statuses then).
    replica_heartbeat_s: float = 5.0
    #: A replica whose heartbeat is older than this is dead: its services move to the live ones (seconds).
    replica_timeout_s: float = 20.0

    # --- Health definition (the original's, thresholds in one place) -----
    #: Cut points, each compared with ``<=``: flag 0 if v <= c0, 1 if <= c1, 2 if <= c2, else 3.
    cpu_cuts: tuple[float, float, float] = (0.25, 0.50, 0.75)
    memory_cuts: tuple[float, float, float] = (0.25, 0.50, 0.75)
    response_time_cuts: tuple[float, float, float] = (0.3, 0.6, 1.0)
    request_rate_cuts: tuple[float, float, float] = (15.0, 30.0, 60.0)
    #: A minute whose health is at or below this is a failure.
    failure_threshold: float = 0.3
    #: Memory exhaustion, an addition to what counts as a predicted failure (health's definition is unchanged): the
    #: JVM memory share (of the heap) whose reach is a failure, the app running out of heap. The status forecasts it
    #: from the trend of the memory floor (serving/eta.py, docs/health.md). None (env: empty, "off" or "none"): off.
    memory_exhaustion: float | None = 0.95
    #: Step of the common grid the four unsynchronised streams are aligned on.
    grid_seconds: float = 5.0
    #: An as-of match older than this is no match: the stream is missing at that grid point.
    alignment_tolerance_s: float = 15.0
    #: A stream silent for longer than this makes current health unknown.
    staleness_limit_s: float = 120.0

    # --- Model registry and training --------------------------------------
    models_dir: Path = Path("models")
    #: Versions kept in the registry (every candidate of a run is a version; the current one is always kept).
    keep_versions: int = 10
    #: The kinds every training run fits and compares (training/selection.py): the baselines of
    #: forecasting/linear.py, the base model zero-shot, blended with ETS and fine-tuned, and the LSTM from scratch.
    candidate_kinds: tuple[str, ...] = CANDIDATE_KINDS
    #: The pretrained base models (``pycemaker pretrain``): zero-shot and fine-tuned candidates start from
    #: its current one, and serving falls back to it while the registry is empty.
    base_models_dir: Path = REPO_BASE_MODELS_DIR
    #: Most epochs of fine-tuning the base model on a service's windows.
    finetune_epochs: int = 5
    #: On a short history (too short for the LSTM's split), refit the chosen fine-tuning on every window of the
    #: history (its held-back blocks included) for the epochs it kept, and serve that (training/candidates.py).
    finetune_refit: bool = True
    #: The least history (minutes) a first model is fitted on; with less, the status says ``insufficient_data``.
    min_history_minutes: int = 60
    input_minutes: int = 120
    horizon_minutes: int = 180
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    train_days: float = 7.0
    #: The services a training run reads (training/data.py): ``all`` (every service with samples), or a comma list of
    #: names. One model is trained across them (docs/model.md, "One model for the fleet").
    train_services: str = "all"
    train_interval_hours: float = 3.0
    max_epochs: int = 30
    seed: int = 7
    #: CPU threads torch trains with. 1: on a 2-core box shared with the API, 2 threads thrash
    #: (measured 3-9x slower per step under load); a dedicated training box may raise it.
    train_threads: int = 1
    #: Wall-clock budget of one fit in seconds; the best epoch so far is kept (0: no limit).
    train_budget_s: float = 180.0
    #: Most training windows one LSTM fit keeps (training/datamodule.py): past it, every service's training windows
    #: are thinned with one wider stride. Bounds the trainer's memory and an epoch's time as the fleet grows
    #: (~11 KB a window; 0: no limit).
    train_max_windows: int = 150_000
    #: How long the trainer waits on one database read (a week of samples; ~20 s from the embedded
    #: server on a busy 2-core box) before the run fails.
    train_read_timeout_s: float = 300.0
    #: Promotion gates (training/selection.py), on the held-back test windows: scores over the first
    #: ``gate_horizon_minutes`` (or the horizon, if shorter); a learned or zero-shot model's health MAE at most
    #: ``gate_naive_ratio`` x the run's seasonal naive's; every candidate's P10-P90 coverage within ``gate_coverage``.
    gate_horizon_minutes: int = 60
    gate_naive_ratio: float = 1.0
    gate_coverage: tuple[float, float] = (0.7, 0.9)

    # --- Warnings ------------------------------------------------------------
    #: A warning: the P50 health forecast crosses the failure threshold within ``warning_minutes``,
    #: in ``warning_hold_minutes`` consecutive minutes' forecasts (the PycemakerFailurePredictedSoon
    #: alert, deploy/prometheus/alerts.yml; scored by forecasting/warnings.py).
    warning_minutes: int = 30
    warning_hold_minutes: int = 2

    # --- Serving -----------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 2
    #: Bearer token for the write routes; unset disables them.
    api_token: str | None = None
    #: Longest interval a read route accepts.
    max_interval_hours: float = 24.0 * 7
    #: Longest forecast horizon (beyond the model's own, forecasts are rolled forward).
    max_horizon_hours: float = 24.0
    #: Origins allowed by CORS; empty disables CORS.
    cors_origins: tuple[str, ...] = ()
    #: How often a worker checks the registry for a newly promoted model.
    model_poll_seconds: float = 2.0
    onnx_threads: int = 1

    # --- Collector -------------------------------------------------------
    prometheus_url: str = "http://127.0.0.1:9090"
    collect_interval_s: float = 5.0
    query_cpu: str = "process_cpu_usage"
    query_memory: str = "sum(jvm_memory_used_bytes)/sum(jvm_memory_max_bytes)"
    query_success: str = (
        'sum(irate(http_server_requests_seconds_count{outcome="SUCCESS",uri!~"/actuator.*"}[1m]))'
    )
    query_fail: str = (
        'sum(irate(http_server_requests_seconds_count{outcome="SERVER_ERROR",uri!~"/actuator.*"}[1m]))'
    )
    query_response_time: str = (
        'sum(irate(http_server_requests_seconds_sum{uri!~"/actuator.*"}[1m]))'
        ' / sum(irate(http_server_requests_seconds_count{uri!~"/actuator.*"}[1m]))'
    )
    #: The write-ahead file: every tick's samples are fsynced here before the database sees them.
    collector_spill_path: Path = Path("var/collector-spill.jsonl")
    #: Its bound: past it the oldest samples are dropped (backfilled from Prometheus once the database answers).
    collector_spill_max_bytes: int = 64 * 1024 * 1024
    #: Port of the collector's own ``/metrics`` (on ``host``); 0: not served.
    collector_metrics_port: int = 9109
    #: Services the collector reads from one Prometheus: ``service={label selector}`` entries separated by ``;``
    #: or new lines (``checkout={job="checkout"}; api-eu={job="api",instance=~"eu-.*"}``). Empty: one default
    #: service, the queries as written. See docs/collector.md, "Many services".
    collector_targets: str = ""
    #: A file holding the targets in the same format (one a line, ``#`` comments); instead of ``collector_targets``.
    collector_targets_file: Path | None = None

    # --- Simulator -------------------------------------------------------
    simulator_seed: int = 42

    log_level: str = "INFO"

    @property
    def stream_set(self) -> tuple:
        """The configured streams (:class:`telemetry.catalogue.Stream`), in the catalogue's order."""
        from telemetry.catalogue import streams_named

        return streams_named(self.streams)

    @property
    def max_flag_sum(self) -> int:
        """The largest sum of flags of the configured streams (3 each): 12 with all four."""
        return 3 * len(self.stream_set)

    def cuts(self) -> dict[str, tuple[float, ...]]:
        """Cut points per health input, keyed like :mod:`telemetry.catalogue`'s flag names."""
        return {
            "cpu": self.cpu_cuts,
            "memory": self.memory_cuts,
            "response_time": self.response_time_cuts,
            "request_rate": self.request_rate_cuts,
        }

    def targets(self) -> tuple:
        """The collector's targets (:class:`telemetry.targets.Target`); empty: the default service alone."""
        from telemetry.targets import parse_targets

        if self.collector_targets_file is None:
            return parse_targets(self.collector_targets)
        try:
            text = Path(self.collector_targets_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"collector_targets_file: cannot read {self.collector_targets_file} ({exc})") from None
        return parse_targets(text)

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict, secrets masked (safe to log)."""
        out = dataclasses.asdict(self)
        if out["api_token"]:
            out["api_token"] = "***"
        if out["mongo_uri"]:
            out["mongo_uri"] = mask_uri(out["mongo_uri"])
        return out


def mask_uri(uri: str) -> str:
    """``mongodb://user:secret@host`` -> ``mongodb://user:***@host`` (safe for logs and errors).

    The credentials end at the *last* ``@``: a password with an unescaped ``@`` or ``/`` (which
    MongoDB refuses, but a log line must not leak either) is masked whole.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep or "@" not in rest:
        return uri
    userinfo, hosts = rest.rsplit("@", 1)
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}:***@{hosts}" if colon else uri


def env_name(name: str) -> str:
    return UNPREFIXED_ENV.get(name, ENV_PREFIX + name.upper())


def _coerce(raw: Any, annotation: Any, name: str) -> Any:
    """Turn a TOML or environment value into the field's declared type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):  # X | None
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none", "off")):
            return None
        inner = next(a for a in args if a is not type(None))
        return _coerce(raw, inner, name)
    try:
        if origin is tuple:
            items = raw if isinstance(raw, (list, tuple)) else [s for s in str(raw).split(",") if s.strip()]
            item_type = args[0]
            values = tuple(item_type(i.strip() if isinstance(i, str) else i) for i in items)
            if args[-1] is not Ellipsis and len(values) != len(args):
                raise SettingsError(f"{name}: expected {len(args)} comma-separated values, got {len(values)}")
            return values
        if annotation is bool:
            if isinstance(raw, bool):
                return raw
            return str(raw).strip().lower() in ("1", "true", "yes", "on")
        if annotation is Path:
            return Path(raw)
        return annotation(raw)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, SettingsError):
            raise
        raise SettingsError(f"{name}: cannot read {raw!r} as {annotation}") from exc


def _holds_secret(name: str, value: Any) -> bool:
    """A token always is one; a MongoDB URI when it carries a password (``user:password@``)."""
    if name != "mongo_uri":
        return bool(value)
    rest = str(value or "").split("://", 1)[-1]
    return "@" in rest and ":" in rest.rsplit("@", 1)[0]


def _validate(s: Settings) -> None:
    try:
        s.stream_set
    except ValueError as exc:
        raise SettingsError(f"streams: {exc}") from None
    for name, cuts in s.cuts().items():
        if list(cuts) != sorted(cuts) or len(set(cuts)) != len(cuts):
            raise SettingsError(f"{name}_cuts must be strictly increasing, got {cuts}")
    if not 0.0 <= s.failure_threshold <= 1.0:
        raise SettingsError("failure_threshold must be within [0, 1]")
    if s.memory_exhaustion is not None and not 0.0 < s.memory_exhaustion <= 1.0:
        raise SettingsError(f"memory_exhaustion must be within (0, 1] (a share of the heap) or off, got {s.memory_exhaustion}")
    if s.grid_seconds <= 0 or s.alignment_tolerance_s <= 0:
        raise SettingsError("grid_seconds and alignment_tolerance_s must be positive")
    if list(s.quantiles) != sorted(s.quantiles) or not all(0 < q < 1 for q in s.quantiles):
        raise SettingsError("quantiles must be increasing and within (0, 1)")
    low, high = s.gate_coverage
    if not 0.0 <= low <= high <= 1.0:
        raise SettingsError(f"gate_coverage must be two shares low <= high within [0, 1], got {s.gate_coverage}")
    if s.gate_horizon_minutes <= 0 or s.gate_naive_ratio <= 0:
        raise SettingsError("gate_horizon_minutes and gate_naive_ratio must be positive")
    unknown = sorted(set(s.candidate_kinds) - set(CANDIDATE_KINDS))
    if unknown or not s.candidate_kinds:
        raise SettingsError(f"candidate_kinds: {', '.join(unknown) or 'none given'}; known: {', '.join(CANDIDATE_KINDS)}")
    if s.frame_minutes < 0 or s.scrape_interval_s < 0:
        raise SettingsError("frame_minutes and scrape_interval_s must be 0 (follow the data) or positive")
    if s.train_max_windows < 0:
        raise SettingsError("train_max_windows must be 0 (no limit) or positive")
    if s.min_history_minutes < 2:
        raise SettingsError("min_history_minutes must be at least 2")
    if s.collector_spill_max_bytes < 4096:
        raise SettingsError("collector_spill_max_bytes must be at least 4096 (a tick is ~1 KiB)")
    from telemetry.services import valid_name

    if not valid_name(s.default_service):
        raise SettingsError(f"default_service: not a valid service name: {s.default_service!r}")
    names = [n.strip() for n in s.train_services.split(",")]
    if s.train_services.strip() != "all" and not all(valid_name(n) for n in names):
        raise SettingsError(f"train_services: 'all' or a comma list of service names, got {s.train_services!r}")
    if s.replica_heartbeat_s <= 0 or s.replica_timeout_s <= s.replica_heartbeat_s:
        raise SettingsError("replica_heartbeat_s must be positive and replica_timeout_s longer than it")
    if s.max_services < 1 or s.services_refresh_s <= 0 or s.services_scan_hours <= 0 or s.metrics_services < 0:
        raise SettingsError("max_services, services_refresh_s and services_scan_hours must be positive, metrics_services at least 0")
    if s.collector_targets.strip() and s.collector_targets_file is not None:
        raise SettingsError("collector_targets and collector_targets_file are both set: use one")
    from telemetry.targets import TargetError

    try:
        s.targets()
    except TargetError as exc:
        where = "collector_targets_file" if s.collector_targets_file is not None else "collector_targets"
        raise SettingsError(f"{where}: {exc}") from None
    if s.warning_minutes <= 0 or s.warning_hold_minutes < 1:
        raise SettingsError("warning_minutes must be positive and warning_hold_minutes at least 1")


def load_settings(
    environ: Mapping[str, str] | None = None, config_file: Path | str | None = None
) -> Settings:
    """Build settings from defaults, a TOML file and the environment."""
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(Settings)
    values: dict[str, Any] = {}

    path = config_file or environ.get(ENV_PREFIX + "CONFIG")
    if path is None and Path("pycemaker.toml").is_file():
        path = "pycemaker.toml"
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read config file {path}: {exc}") from exc
        table = data.get("pycemaker", data)
        unknown = set(table) - set(hints)
        if unknown:
            raise SettingsError(f"unknown settings in {path}: {', '.join(sorted(unknown))}")
        for name in SECRET_FIELDS:
            if name in table and _holds_secret(name, table[name]):
                # Config files get committed and copied into images; secrets come from the environment.
                raise SettingsError(f"{name} holds a credential: set {env_name(name)} or {env_name(name)}_FILE, not {path}")
        for name, raw in table.items():
            values[name] = _coerce(raw, hints[name], name)

    for f in dataclasses.fields(Settings):
        key = env_name(f.name)
        if key in environ:
            values[f.name] = _coerce(environ[key], hints[f.name], f.name)
        elif f.name in SECRET_FIELDS and key + "_FILE" in environ:
            try:
                secret = Path(environ[key + "_FILE"]).read_text().strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise SettingsError(f"{key}_FILE: cannot read {environ[key + '_FILE']} ({type(exc).__name__})") from None
            values[f.name] = _coerce(secret, hints[f.name], f.name)

    settings = Settings(**values)
    _validate(settings)
    return settings


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()


def override(settings: Settings, **changes: Any) -> Settings:
    """Apply CLI flags (ignoring those left unset) on top of loaded settings."""
    changes = {k: v for k, v in changes.items() if v is not None}
    updated = dataclasses.replace(settings, **changes)
    _validate(updated)
    return updated


__all__ = ["Settings", "SettingsError", "load_settings", "get_settings", "override", "env_name", "mask_uri"]

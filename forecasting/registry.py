"""The model registry on disk (``models_dir``), shared by the trainer (writes) and the API (reads).

Layout::

    models/
      current                  # the promoted version's name: replaced atomically (write, then rename)
      services.json            # per-service assignments: service -> version, decided against one champion
      20261130T120000Z-1a2b3c/
        model.onnx
        card.json              # ModelCard: what the model is, how it was trained, how it scored

A version directory appears whole (it is written under a temporary name, then renamed), so a
reader never sees a half-written model. A rejected candidate stays, marked with its reason.

``services.json`` (:func:`write_assignments`) names, for the services of a fleet run where another
model than the champion serves measurably better, that model's version. It records the champion it
was decided against and holds only while ``current`` still names it (:func:`service_assignments`):
the trainer writes it before it moves ``current``, so the two change together for a reader, and a
rollback (``models activate``) to another version leaves every service on the one ``current`` model.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
UTC = dt.timezone.utc
CARD = "card.json"
MODEL = "model.onnx"
CURRENT = "current"
ASSIGNMENTS = "services.json"
#: Version of the card/artifact format; readers refuse formats they do not know.
FORMAT_VERSION = 1

STATUS_CANDIDATE = "candidate"
STATUS_PROMOTED = "promoted"
STATUS_REJECTED = "rejected"


class RegistryError(RuntimeError):
    """A registry entry is missing or unreadable."""


@dataclass
class ModelCard:
    """Everything needed to run a model and judge it. Written as ``card.json``."""

    version: str
    created_at: str  # ISO-8601 UTC
    #: The input window L and horizon H in minutes; every row of its frames is ``step_minutes`` long.
    input_minutes: int
    horizon_minutes: int
    quantiles: list[float]
    features: list[str]
    targets: list[str]
    scaling: dict[str, Any]
    #: What the model is: "lstm" (training/network.py), or a baseline of :mod:`forecasting.linear`
    #: ("seasonal_naive", "ets"). Every kind honours the same ONNX contract. Cards before kinds existed are LSTMs.
    kind: str = "lstm"
    #: Minutes per frame step the model reads and forecasts (1: per-minute frames; 5 for 5-minute data), and
    #: the as-of tolerance its frames were scored with (telemetry.frames.Cadence): serving frames data alike.
    step_minutes: int = 1
    tolerance_s: float = 15.0
    #: The streams it was trained on (the service's configured streams; cards from before: all four).
    streams: list[str] = field(default_factory=lambda: ["cpu", "memory", "requests", "response_time"])
    #: "direct": the network's health output is served; "derived": health is scored from forecast streams; "mean": the
    #: two averaged (training/scoring.py).
    health_source: str = "direct"
    #: Per health input, the spread of a minute's samples about its value that derived health scores flags with
    #: (forecasting/flag_spread.py, fitted on the service's minutes); empty (cards from before): the hard cuts.
    flag_spread: dict[str, float] = field(default_factory=dict)
    data_range: dict[str, str] = field(default_factory=dict)
    #: Offsets added to the health quantiles (forecasting.calibration); empty: none.
    calibration: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    #: The training run that made it: every candidate of that run, its scores on the same held-back
    #: windows, and why it won or lost (training/selection.py).
    selection: dict[str, Any] = field(default_factory=dict)
    status: str = STATUS_CANDIDATE
    reason: str = ""
    format_version: int = FORMAT_VERSION
    onnx: dict[str, Any] = field(default_factory=lambda: {"input": "window", "output": "quantiles"})

    def to_json(self) -> str:
        return json.dumps(json_safe(asdict(self)), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelCard":
        if data.get("format_version", 0) > FORMAT_VERSION:
            raise RegistryError(f"card format {data['format_version']} is newer than this reader ({FORMAT_VERSION})")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def created(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.created_at)

    @property
    def input_steps(self) -> int:
        return self.input_minutes // self.step_minutes

    @property
    def horizon_steps(self) -> int:
        return self.horizon_minutes // self.step_minutes


def json_safe(value: Any) -> Any:
    """Non-finite floats become None (a card is JSON, and NaN is not), numpy scalars and arrays plain numbers and lists."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy arrays and scalars
        return json_safe(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def new_version(now: dt.datetime | None = None, suffix: str = "") -> str:
    """A sortable version name: ``20261130T120000Z`` (+ ``-suffix``, e.g. the kind and a random tag)."""
    now = (now or dt.datetime.now(UTC)).astimezone(UTC)
    return now.strftime("%Y%m%dT%H%M%SZ") + (f"-{suffix}" if suffix else "")


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600: a server running as another user must read it
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_version(models_dir: Path, onnx_path: Path, card: ModelCard) -> Path:
    """Copy a model and its card into the registry as a new version directory (appears atomically)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    final = models_dir / card.version
    if final.exists():
        raise RegistryError(f"version {card.version} already exists")
    staging = Path(tempfile.mkdtemp(dir=models_dir, prefix=f".{card.version}."))
    try:
        staging.chmod(0o755)  # mkdtemp makes 0700: a server running as another user must read it
        shutil.copyfile(onnx_path, staging / MODEL)
        (staging / CARD).write_text(card.to_json())
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def read_card(models_dir: Path, version: str) -> ModelCard:
    path = models_dir / version / CARD
    try:
        return ModelCard.from_dict(json.loads(path.read_text()))
    except FileNotFoundError as exc:
        raise RegistryError(f"no model version {version!r} in {models_dir}") from exc
    except (json.JSONDecodeError, TypeError) as exc:
        raise RegistryError(f"unreadable card for version {version!r}: {exc}") from exc


def update_card(models_dir: Path, card: ModelCard) -> None:
    _atomic_write(models_dir / card.version / CARD, card.to_json())


def list_versions(models_dir: Path) -> list[ModelCard]:
    """Every readable version, oldest first (unreadable ones are logged and skipped)."""
    if not models_dir.is_dir():
        return []
    cards = []
    for path in sorted(models_dir.iterdir()):
        if path.is_dir() and not path.name.startswith(".") and (path / CARD).exists():
            try:
                cards.append(read_card(models_dir, path.name))
            except RegistryError as exc:
                log.warning("skipping %s: %s", path, exc)
    return sorted(cards, key=lambda c: (c.created_at, c.version))


def current_version(models_dir: Path) -> str | None:
    try:
        name = (models_dir / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def current_or_newest(models_dir: Path) -> str | None:
    """The version ``current`` names, else the newest readable one (a shipped base model's folder); None if none."""
    version = current_version(models_dir)
    if version is not None:
        return version
    cards = list_versions(models_dir)
    return cards[-1].version if cards else None


def model_path(models_dir: Path, version: str) -> Path:
    return models_dir / version / MODEL


def activate(models_dir: Path, version: str, reason: str = "") -> ModelCard:
    """Point ``current`` at ``version`` (atomic rename); used by promotion and rollback."""
    card = read_card(models_dir, version)
    if not model_path(models_dir, version).is_file():
        raise RegistryError(f"version {version!r} has no {MODEL}")
    card.status = STATUS_PROMOTED
    card.reason = reason or card.reason
    update_card(models_dir, card)
    _atomic_write(models_dir / CURRENT, version + "\n")
    log.info("current model is now %s", version)
    return card


def reject(models_dir: Path, version: str, reason: str) -> ModelCard:
    card = read_card(models_dir, version)
    card.status = STATUS_REJECTED
    card.reason = reason
    update_card(models_dir, card)
    log.info("model %s rejected: %s", version, reason)
    return card


@dataclass(frozen=True)
class Assignments:
    """Which version serves which service, decided by one training run against one champion (``services.json``)."""

    #: The version ``current`` named when they were decided: they hold only while it still does.
    champion: str
    #: service -> {"version": ..., "kind": ..., "reason": ...}
    services: dict[str, dict[str, Any]]
    run_id: str | None = None
    decided_at: str = ""

    def versions(self) -> dict[str, str]:
        return {name: entry["version"] for name, entry in self.services.items()}

    def to_json(self) -> str:
        return json.dumps(json_safe({"format_version": FORMAT_VERSION, **asdict(self)}), indent=2, sort_keys=True)


def write_assignments(models_dir: Path, assignments: Assignments) -> None:
    """Replace ``services.json`` (write, then rename); every version it names must be in the registry."""
    for version in set(assignments.versions().values()):
        if not model_path(models_dir, version).is_file():
            raise RegistryError(f"an assignment names version {version!r}, which has no {MODEL}")
    _atomic_write(models_dir / ASSIGNMENTS, assignments.to_json())


def read_assignments(models_dir: Path) -> Assignments | None:
    """``services.json`` as it is (None: none, or unreadable: logged), valid or not (see :func:`service_assignments`)."""
    try:
        data = json.loads((models_dir / ASSIGNMENTS).read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("unreadable %s: %s", models_dir / ASSIGNMENTS, exc)
        return None
    if not isinstance(data, dict) or data.get("format_version", 0) > FORMAT_VERSION or not isinstance(data.get("services"), dict):
        log.warning("ignoring %s: not an assignments file this reader knows", models_dir / ASSIGNMENTS)
        return None
    services = {str(k): v for k, v in data["services"].items() if isinstance(v, dict) and isinstance(v.get("version"), str)}
    return Assignments(str(data.get("champion") or ""), services, data.get("run_id"), str(data.get("decided_at") or ""))


def service_assignments(models_dir: Path) -> dict[str, str]:
    """service -> version for every service served by another model than ``current``; empty when there is no
    ``services.json`` or it was decided against another champion than the one ``current`` names now."""
    assignments = read_assignments(models_dir)
    if assignments is None or assignments.champion != current_version(models_dir):
        return {}
    return assignments.versions()


def prune(models_dir: Path, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` versions; the current one and every version an assignment names are kept."""
    current = current_version(models_dir)
    assignments = read_assignments(models_dir)
    kept = {current} | set(assignments.versions().values() if assignments else ())
    versions = [c.version for c in list_versions(models_dir)]
    doomed = [v for v in versions[: max(0, len(versions) - keep)] if v not in kept]
    for version in doomed:
        shutil.rmtree(models_dir / version, ignore_errors=True)
    return doomed

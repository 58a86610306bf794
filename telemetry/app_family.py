"""A randomized family of simulated apps; the seed's app is one member (see docs/simulator.md).

An :class:`AppProfile` says what an app is: its capacity and load, traffic shape, noise, garbage
collector, the incidents it suffers (kind, frequency, speed, strength), which streams it exposes
and how often they are scraped. :func:`sample_profile` draws one from its seed, reproducibly;
:func:`seed_profile` is the original test bed's app, which :func:`telemetry.simulator.simulate`
reproduces exactly. Some of the family is held out of pretraining (held-out seeds and one corner,
diurnal traffic with a slow dependency) so that a model can be proven on apps it never saw.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from telemetry.catalogue import STREAM_NAMES
from telemetry.settings import Settings
from telemetry.traffic import TRAFFIC_SHAPES

INCIDENT_KINDS: tuple[str, ...] = ("memory_leak", "cpu_saturation", "slow_dependency", "error_storm", "collector_outage")
#: The stream subsets a profile may expose (names from the catalogue).
STREAM_SUBSETS: dict[str, tuple[str, ...]] = {
    "all": STREAM_NAMES,
    "no_memory": tuple(n for n in STREAM_NAMES if n != "memory"),
    "no_response_time": tuple(n for n in STREAM_NAMES if n != "response_time"),
}
#: Scrape intervals a sampled profile uses, seconds (the seed's streams are scraped every 5-6 s).
SCRAPE_INTERVALS_S: tuple[float, ...] = (5.0, 10.0, 15.0, 30.0, 60.0)
#: Profiles of these seeds are never pretrained on (proof on unseen apps).
HELD_OUT_SEEDS: frozenset[int] = frozenset(range(10_000, 10_100))


@dataclass(frozen=True)
class IncidentSpec:
    """One kind of incident an app suffers: about ``per_day`` a day, each lasting ``minutes`` (a uniform range).

    ``strength`` by kind: ``memory_leak``, the leak curve's exponent (1: linear, 2: slow then
    accelerating) while ``minutes`` is its time to the crash (its speed); ``cpu_saturation``, the
    CPU a runaway job takes (capacity falls to ``1 - strength / 0.9``); ``slow_dependency``, seconds
    added to every response (reached after a third of the episode); ``error_storm``, the share of
    requests failing (and retried); ``collector_outage``, unused.
    """

    kind: str
    per_day: float
    minutes: tuple[float, float]
    strength: float = 0.0


SEED_INCIDENTS: tuple[IncidentSpec, ...] = (
    IncidentSpec("memory_leak", 2.0, (40.0, 90.0), 2.0),
    IncidentSpec("cpu_saturation", 2.0, (10.0, 30.0), 0.45),
    IncidentSpec("collector_outage", 1.0, (5.0, 40.0)),
)


@dataclass(frozen=True)
class AppProfile:
    """What a simulated app is. The defaults are the seed's app (the original test bed)."""

    #: The seed it was sampled from (None: the seed's app).
    seed: int | None = None
    #: Capacity relative to the seed's 130 req/s (request-rate cut points scale with it: :func:`app_settings`).
    capacity_scale: float = 1.0
    #: Peak users relative to ``capacity_scale`` x the seed's 1000 (1: as overloaded at peak as the seed).
    load_factor: float = 1.0
    #: Response time of an idle app, seconds.
    service_time: float = 0.05
    traffic: str = "locust"
    #: Traffic shape parameters (:func:`telemetry.traffic.users_at`).
    base_level: float = 0.2
    peak_hour: float = 14.0
    weekend_level: float = 0.6
    bursts_per_hour: float = 1.0
    wander: float = 0.0
    #: Multiplies every stream's measurement noise.
    noise: float = 1.0
    #: JVM memory: the floor, the sawtooth's height (heap freed per GC) and its speed (x the seed's).
    memory_base: float = 0.12
    gc_amplitude: float = 0.10
    gc_rate: float = 1.0
    incidents: tuple[IncidentSpec, ...] = SEED_INCIDENTS
    streams: tuple[str, ...] = STREAM_NAMES
    #: The longest gap between two scrapes of a stream; each gap is uniform in [5/6, 1] of it.
    scrape_interval_s: float = 6.0

    def __post_init__(self) -> None:
        if self.traffic not in TRAFFIC_SHAPES:
            raise ValueError(f"unknown traffic shape {self.traffic!r}: use one of {', '.join(TRAFFIC_SHAPES)}")
        unknown = [s for s in self.streams if s not in STREAM_NAMES] + [
            i.kind for i in self.incidents if i.kind not in INCIDENT_KINDS
        ]
        if unknown or not self.streams:
            raise ValueError(f"unknown streams or incident kinds: {', '.join(unknown) or '(no streams)'}")

    @property
    def name(self) -> str:
        return "seed" if self.seed is None else f"family-{self.seed}"

    @property
    def user_scale(self) -> float:
        """Users relative to the seed's."""
        return self.capacity_scale * self.load_factor

    def to_dict(self) -> dict:
        return {"name": self.name, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> AppProfile:
        """The inverse of :meth:`to_dict` (JSON lists become tuples)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        if "incidents" in values:
            values["incidents"] = tuple(
                IncidentSpec(i["kind"], i["per_day"], tuple(i["minutes"]), i.get("strength", 0.0)) for i in values["incidents"]
            )
        if "streams" in values:
            values["streams"] = tuple(values["streams"])
        return cls(**values)


def seed_profile() -> AppProfile:
    """The original test bed's app, exactly as the simulator has always simulated it."""
    return AppProfile()


def app_settings(settings: Settings, profile: AppProfile) -> Settings:
    """``settings`` for a service that is ``profile``: its streams, its scrape interval, its request-rate cuts."""
    return dataclasses.replace(
        settings,
        streams=tuple(profile.streams),
        scrape_interval_s=float(profile.scrape_interval_s),
        request_rate_cuts=tuple(c * profile.capacity_scale for c in settings.request_rate_cuts),
    )


def sample_profile(seed: int) -> AppProfile:
    """One app of the family, a pure function of ``seed`` (ranges: docs/simulator.md)."""
    rng = np.random.default_rng([seed, 16])

    def log_uniform(lo: float, hi: float) -> float:
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))

    def rounded(x: float, digits: int = 3) -> float:
        return round(float(x), digits)

    traffic = TRAFFIC_SHAPES[int(rng.integers(len(TRAFFIC_SHAPES)))]
    subset = rng.choice(["all", "no_memory", "no_response_time", "one"], p=[0.55, 0.2, 0.15, 0.1])
    streams = (STREAM_NAMES[int(rng.integers(len(STREAM_NAMES)))],) if subset == "one" else STREAM_SUBSETS[str(subset)]
    return AppProfile(
        seed=seed,
        capacity_scale=rounded(log_uniform(0.25, 4.0)),
        load_factor=rounded(log_uniform(0.02, 0.6)),
        service_time=rounded(log_uniform(0.02, 0.2)),
        traffic=traffic,
        base_level=rounded(rng.uniform(0.05, 0.5)),
        peak_hour=rounded(rng.uniform(0, 24), 1),
        weekend_level=rounded(rng.uniform(0.3, 1.0)),
        bursts_per_hour=rounded(log_uniform(0.2, 4.0)),
        wander=rounded(rng.uniform(0.0, 0.15)),
        noise=rounded(log_uniform(0.5, 3.0)),
        memory_base=rounded(rng.uniform(0.08, 0.35)),
        gc_amplitude=rounded(rng.uniform(0.03, 0.30)),
        gc_rate=rounded(log_uniform(0.3, 3.0)),
        incidents=_sample_incidents(rng, rounded, log_uniform),
        streams=tuple(streams),
        scrape_interval_s=float(rng.choice(SCRAPE_INTERVALS_S, p=[0.3, 0.25, 0.25, 0.1, 0.1])),
    )


def _sample_incidents(rng: np.random.Generator, rounded, log_uniform) -> tuple[IncidentSpec, ...]:
    """Each kind with some probability, at 0.3-3 a day, with its speed and strength drawn."""
    ranges = {  # kind: (probability, shortest duration range in minutes, strength range)
        "memory_leak": (0.7, (15.0, 240.0), (1.0, 3.0)),
        "cpu_saturation": (0.6, (5.0, 40.0), (0.2, 0.6)),
        "slow_dependency": (0.5, (10.0, 60.0), (0.3, 3.0)),
        "error_storm": (0.5, (5.0, 30.0), (0.1, 0.6)),
        "collector_outage": (0.5, (2.0, 40.0), (0.0, 0.0)),
    }
    specs = []
    for kind, (probability, (short, long), (weak, strong)) in ranges.items():
        drawn = rng.uniform(size=5)  # always five draws: one kind's choice never shifts another's
        if drawn[0] >= probability:
            continue
        lo = short * (long / short) ** drawn[1]
        specs.append(IncidentSpec(
            kind=kind,
            per_day=rounded(0.3 + 2.7 * drawn[2], 2),
            minutes=(rounded(lo, 1), rounded(lo * (1.2 + 1.3 * drawn[3]), 1)),
            strength=rounded(weak + (strong - weak) * drawn[4]),
        ))
    return tuple(specs)


def in_held_out_corner(profile: AppProfile) -> bool:
    """The corner of the family pretraining never sees: diurnal traffic with a slow dependency."""
    return profile.traffic == "diurnal" and any(i.kind == "slow_dependency" for i in profile.incidents)


def is_held_out(profile: AppProfile) -> bool:
    """Whether pretraining must not see ``profile`` (a held-out seed, or the held-out corner)."""
    return profile.seed in HELD_OUT_SEEDS or in_held_out_corner(profile)


def pretraining_profiles(count: int, first_seed: int = 0) -> Iterator[AppProfile]:
    """``count`` profiles for pretraining, from ``first_seed`` on, skipping every held-out one."""
    seed, found = first_seed, 0
    while found < count:
        profile = sample_profile(seed)
        if not is_held_out(profile):
            found += 1
            yield profile
        seed += 1


def held_out_profiles(count: int) -> list[AppProfile]:
    """``count`` profiles pretraining never saw: held-out seeds first, then corner members of ordinary seeds."""
    seeds = sorted(HELD_OUT_SEEDS)[: max(count - count // 2, 1)]
    unseen = [sample_profile(s) for s in seeds]
    seed = 0
    while len(unseen) < count:
        profile = sample_profile(seed)
        if in_held_out_corner(profile):
            unseen.append(profile)
        seed += 1
    return unseen[:count]

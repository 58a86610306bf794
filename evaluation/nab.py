"""The vendored real series: four AWS CloudWatch series of the Numenta Anomaly Benchmark (``data/nab/``).

Provenance, licence and what each file holds: ``data/nab/README.md``. They are inside the
repository, so the tests, the notebook and ``make evaluate`` read them on any clone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Where the CSV files lie (``timestamp,value``, 5-minute samples, UTC).
NAB_DIR = Path(__file__).resolve().parents[1] / "data" / "nab"


@dataclass(frozen=True)
class NabFile:
    """How one file is imported: into which stream, with which scale, and what the value is."""

    stream: str
    scale: float
    what: str


NAB_FILES: dict[str, NabFile] = {
    "ec2_cpu_utilization_5f5533.csv": NabFile("cpu_usage", 0.01, "EC2 CPU, percent -> ratio"),
    "ec2_cpu_utilization_24ae8d.csv": NabFile("cpu_usage", 0.01, "EC2 CPU, percent -> ratio"),
    "rds_cpu_utilization_cc0c53.csv": NabFile("cpu_usage", 0.01, "RDS CPU, percent -> ratio"),
    "elb_request_count_8c0756.csv": NabFile("request_count", 1 / 300, "ELB requests per 5 min -> per second (successes)"),
}


def nab_path(name: str) -> Path:
    return NAB_DIR / name


__all__ = ["NAB_DIR", "NAB_FILES", "NabFile", "nab_path"]

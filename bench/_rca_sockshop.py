"""The real Sock Shop fault injections (`sockshop/` of the shared data), as cases for `bench.rca`.

Contract: read-only loading, no scoring. Each case folder `<service>-<cpu|mem>/<run>/` holds
`normal.csv` then `anomalous.csv` (1 s step, first column `time`); the two were recorded days
apart, so the anomalous part is re-timed to follow the normal part second by second (as RCD and
RCAEval concatenate them) and the fault starts at the first anomalous sample.

Source: the RCD paper's repository (Ikram et al., "Root Cause Analysis of Failures in
Microservices through Causal Discovery", NeurIPS 2022); research use with citation.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Final

import numpy as np

FOLDER: Final[str] = "sockshop"
GRAPH: Final[dict[str, list[str]]] = {
    "front-end": ["catalogue", "carts", "orders", "user"],
    "orders": ["carts", "user", "payment", "shipping"],
    "shipping": ["rabbitmq"],
    "queue-master": ["rabbitmq"],
    "carts": ["carts-db"],
    "catalogue": ["catalogue-db"],
    "user": ["user-db"],
}
"""Sock Shop's call graph (caller -> callees), from the data set's README: front-end calls
catalogue, carts, orders and user; orders calls carts, user, payment and shipping; shipping
publishes to rabbitmq, which queue-master consumes; four services use their own database."""
METRIC_NAMES: Final[dict[str, str]] = {
    "cpu": "cpu",
    "mem": "memory",
    "lod": "rps",
    "lat_50": "latency_p50",
    "lat_90": "latency_p90",
    "lat_99": "latency_p99",
}
"""Column suffix -> metric name as `engines.anomaly.metric_kind` reads it (`lod` is the load)."""
FAULTS: Final[dict[str, str]] = {"cpu": "cpu_saturation", "mem": "memory_leak"}
"""Injected fault (folder suffix) -> the fault type `engines.rca` should report."""

Series = dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]


@dataclasses.dataclass(frozen=True)
class Case:
    """One fault injection: the series (normal then anomalous, 1 s apart) and the truth."""

    name: str
    """`<service>-<cpu|mem>/<run>`."""
    root: str
    fault: str
    """`cpu_saturation` or `memory_leak`."""
    run: int
    onset_s: float
    """First anomalous sample (s on the re-timed clock that starts at 0)."""
    series: Series


def _read(path: Path) -> tuple[list[str], np.ndarray]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array(rows[1:], dtype=float)


def _split_column(column: str) -> tuple[str, str]:
    """`carts-db_cpu` -> (`carts-db`, `cpu`); `carts_lat_90` -> (`carts`, `latency_p90`)."""
    service, _, suffix = column.partition("_")
    return service, METRIC_NAMES[suffix]


def load_case(folder: Path) -> Case:
    """One case from its `<service>-<cpu|mem>/<run>` folder."""
    header, normal = _read(folder / "normal.csv")
    header_b, anomalous = _read(folder / "anomalous.csv")
    if header_b != header or header[0] != "time":
        raise ValueError(f"{folder}: normal.csv and anomalous.csv must share a header starting with time")
    values = np.vstack([normal[:, 1:], anomalous[:, 1:]])
    t = np.arange(values.shape[0], dtype=float)
    series: Series = {}
    for j, column in enumerate(header[1:]):
        service, metric = _split_column(column)
        series.setdefault(service, {})[metric] = (t, values[:, j])
    root, _, fault = folder.parent.name.rpartition("-")
    return Case(
        name=f"{folder.parent.name}/{folder.name}",
        root=root,
        fault=FAULTS[fault],
        run=int(folder.name),
        onset_s=float(normal.shape[0]),
        series=series,
    )


def load_cases(root: Path) -> list[Case]:
    """Every case under `root / FOLDER`, sorted by name."""
    folders = sorted(p.parent for p in (root / FOLDER).glob("*/*/normal.csv"))
    return [load_case(f) for f in folders]

"""Schedulers people use today, with the same interface as the learned policy (DESIGN section 5)."""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np

from megagpu.core import fleet, model, ports, prior, waiting

ThroughputFn = Callable[[model.Workload, int], float]
"""True throughput of a workload on a fleet row (work units/s; 0 when it cannot run)."""


def _pick(values: np.ndarray, view: fleet.View) -> ports.Choice:
    """The first candidate with the highest value (forced when it is the only one)."""
    if len(view.rows) == 0:
        raise ports.NoCandidatesError("no feasible candidates")
    index = int(np.argmax(values))
    mode = "forced" if len(view.rows) == 1 else "exploit"
    return ports.Choice(row=int(view.rows[index]), mode=mode, values=values)


class RandomPolicy:
    """Uniformly random feasible node."""

    name = "random"

    def choose(
        self, workload: model.Workload, view: fleet.View, rng: random.Random
    ) -> ports.Choice:
        """Pick uniformly at random."""
        values = np.zeros(len(view.rows))
        if len(view.rows):
            values[rng.randrange(len(view.rows))] = 1.0
        return _pick(values, view)

    def observe(self, outcome: model.Outcome) -> bool:
        """Learns nothing."""
        return False


class RoundRobinPolicy:
    """The next feasible node after the previously chosen one, in node order."""

    name = "round_robin"

    def __init__(self) -> None:
        self._last = -1

    def choose(
        self, workload: model.Workload, view: fleet.View, rng: random.Random
    ) -> ports.Choice:
        """Pick the first node after the last one chosen, wrapping around."""
        nodes = view.fleet.row_node[view.rows]
        distance = (nodes - self._last - 1) % max(len(view.fleet.nodes), 1)
        choice = _pick(-distance.astype(float), view)
        self._last = int(view.fleet.row_node[choice.row])
        return choice

    def observe(self, outcome: model.Outcome) -> bool:
        """Learns nothing."""
        return False


class LeastAllocatedPolicy:
    """Kubernetes' default spreading: the node with the largest free share."""

    name = "least_allocated"

    def choose(
        self, workload: model.Workload, view: fleet.View, rng: random.Random
    ) -> ports.Choice:
        """Pick the emptiest node."""
        return _pick(view.free_share(), view)

    def observe(self, outcome: model.Outcome) -> bool:
        """Learns nothing."""
        return False


class MostAllocatedPolicy:
    """Bin packing: the node with the smallest free share that still fits."""

    name = "most_allocated"

    def choose(
        self, workload: model.Workload, view: fleet.View, rng: random.Random
    ) -> ports.Choice:
        """Pick the fullest node."""
        return _pick(-view.free_share(), view)

    def observe(self, outcome: model.Outcome) -> bool:
        """Learns nothing."""
        return False


def benchmark_speed(workload: model.Workload, view: fleet.View) -> np.ndarray:
    """Relative speed of every candidate row from its benchmarks alone (the prior's rule)."""
    f, rows = view.fleet, view.rows
    return prior.relative_speed(
        workload.workload_type,
        workload.compute_intensity,
        f.row_efficiency[rows],
        f.row_fp16_tflops[rows],
        f.row_fp32_tflops[rows],
        f.row_mem_gbps[rows],
        workload.precision,
    )


class FastestDevicePolicy:
    """Ranks devices by benchmark speed only; ties go to the emptiest node."""

    name = "fastest_device"

    def choose(
        self, workload: model.Workload, view: fleet.View, rng: random.Random
    ) -> ports.Choice:
        """Pick the fastest device by benchmarks."""
        speed = benchmark_speed(workload, view)
        return _pick(speed + 1e-9 * view.free_share(), view)

    def observe(self, outcome: model.Outcome) -> bool:
        """Learns nothing."""
        return False


class OracleGreedyPolicy:
    """Knows every true throughput; picks the fastest free device (myopic)."""

    name = "oracle_greedy"

    def __init__(self, throughput: ThroughputFn) -> None:
        self._throughput = throughput

    def choose(
        self, workload: model.Workload, view: fleet.View, rng: random.Random
    ) -> ports.Choice:
        """Pick the truly fastest feasible device, ties to the fullest node (best fit)."""
        true = np.asarray([self._throughput(workload, int(r)) for r in view.rows], dtype=float)
        return _pick(true * (1.0 - 1e-6 * view.free_share()), view)

    def observe(self, outcome: model.Outcome) -> bool:
        """Learns nothing."""
        return False


class EarliestFinishPolicy:
    """Knows every true throughput and size; waits for a busy device that finishes sooner.

    A reference for waiting, not a scheduler anyone can run: the run time on each candidate is
    the true work over the true throughput, and what runs on a busy node ends when its own true
    run time says. It places on the fastest free device (as ``oracle_greedy``) unless a busy
    one finishes the job earlier (``core.waiting`` with no margin), within the wait left.
    """

    name = "earliest_finish"
    waits = True

    def __init__(self, throughput: ThroughputFn, settings: waiting.Settings = waiting.ORACLE):
        self._throughput = throughput
        self.settings = settings

    def _run_s(self, workload: model.Workload, rows: np.ndarray) -> np.ndarray:
        rates = np.asarray([self._throughput(workload, int(r)) for r in rows], dtype=float)
        with np.errstate(divide="ignore"):
            return np.where(rates > 0, workload.work / rates, np.nan)

    def choose(
        self, workload: model.Workload, view: fleet.View, rng: random.Random
    ) -> ports.Choice:
        """Wait when a busy device finishes sooner, else the truly fastest free device."""
        if len(view.rows) == 0:
            raise ports.NoCandidatesError("no feasible candidates")

        def run_times(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return self._run_s(workload, rows), np.zeros(len(rows))

        def predict_running(job: fleet.Running) -> model.Prediction | None:
            seconds = float(self._run_s(job.workload, np.asarray([job.row]))[0])
            return None if np.isnan(seconds) else model.Prediction(seconds, 0.0, "true")

        found = waiting.plan(workload, view, self.settings, run_times, predict_running, "true")
        if found.wait:
            return ports.Choice(
                found.row,
                "wait",
                np.zeros(len(view.rows)),
                wait=True,
                prediction=found.prediction(found.row),
                start_s=found.start(found.row),
                reason=found.reason,
            )
        speed = 1.0 / np.nan_to_num(found.run_s[: len(view.rows)], nan=np.inf)
        choice = _pick(speed * (1.0 - 1e-6 * view.free_share()), view)
        return choice._replace(prediction=found.prediction(choice.row))

    def observe(self, outcome: model.Outcome) -> bool:
        """Learns nothing."""
        return False


BASELINES = ("random", "round_robin", "least_allocated", "most_allocated", "fastest_device")


def make_baseline(name: str) -> ports.Policy:
    """A baseline by name (``oracle_greedy``, ``earliest_finish``: build them directly)."""
    classes: dict[str, Callable[[], ports.Policy]] = {
        "random": RandomPolicy,
        "round_robin": RoundRobinPolicy,
        "least_allocated": LeastAllocatedPolicy,
        "most_allocated": MostAllocatedPolicy,
        "fastest_device": FastestDevicePolicy,
    }
    if name not in classes:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(classes)}")
    return classes[name]()

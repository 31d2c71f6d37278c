"""A placement environment with Gymnasium's reset/step contract, in numpy only.

Each step places the next job of a scenario on a device class (the action). Time advances to the
job's arrival; if nothing fits, to the next completion. The observation holds, per device class:
whether it fits now, its free share, and its true relative speed for the job. The reward is
``log(throughput / best throughput among device classes)`` (0 at best); an infeasible action is
replaced by the best feasible class and costs ``INFEASIBLE_PENALTY``.
"""

from __future__ import annotations

import heapq
from typing import Any

import numpy as np

from megagpu.core import fleet
from megagpu.sim import simulator

INFEASIBLE_PENALTY = -1.0
FEATURES = 3


class PlacementEnv:
    """Sequential job placement over a scenario (terminated when every job is placed)."""

    def __init__(self, scenario: simulator.Scenario) -> None:
        self.scenario = scenario
        self.fleet = fleet.Fleet.build(scenario.nodes)
        self.action_count = len(self.fleet.action_keys)
        self.observation_size = FEATURES * self.action_count
        self._rng = np.random.default_rng()
        self._reset_state()

    def _reset_state(self) -> None:
        self._free = np.asarray([n.slots for n in self.scenario.nodes], dtype=np.int64)
        self._running: list[tuple[float, int, int]] = []
        self._next = 0
        self._now = 0.0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start over (the job order is the scenario's; ``seed`` seeds the tie-breaks)."""
        self._rng = np.random.default_rng(seed)
        self._reset_state()
        return self._observe(), {"job": 0}

    def _job(self) -> simulator.Job:
        return self.scenario.jobs[self._next]

    def _rows(self) -> tuple[np.ndarray, np.ndarray]:
        w = self._job().workload
        thr, _ = self.scenario.table.arrays(self.fleet, w.model, w.gpus)
        rows = self.fleet.feasible_rows(w, self._free)
        return rows[thr[rows] > 0], thr

    def _advance(self) -> None:
        self._now = max(self._now, self._job().arrival_s)
        while self._running and self._running[0][0] <= self._now:
            _, node, slots = heapq.heappop(self._running)
            self._free[node] += slots
        while len(self._rows()[0]) == 0 and self._running:
            self._now, node, slots = heapq.heappop(self._running)
            self._free[node] += slots

    def _observe(self) -> np.ndarray:
        obs = np.zeros((self.action_count, FEATURES), dtype=np.float32)
        if self._next >= len(self.scenario.jobs):
            return obs.ravel()
        self._advance()
        rows, thr = self._rows()
        best = float(thr.max()) or 1.0
        for aid in range(self.action_count):
            mine = np.flatnonzero(self.fleet.row_action_id == aid)
            feasible = np.intersect1d(mine, rows)
            share = self._free[self.fleet.row_node[mine]] / self.fleet.row_slots[mine]
            obs[aid] = (float(len(feasible) > 0), float(share.max()), float(thr[mine].max()) / best)
        return obs.ravel()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Place the current job on a node of device class ``action``."""
        rows, thr = self._rows()
        job = self._job()
        mine = rows[self.fleet.row_action_id[rows] == int(action)]
        penalty = 0.0
        if len(mine) == 0:
            if len(rows) == 0:
                raise RuntimeError(f"job {job.workload.uid} fits nowhere in this cluster")
            mine, penalty = rows[thr[rows] == thr[rows].max()], INFEASIBLE_PENALTY
        row = int(mine[self._rng.integers(len(mine))])
        node = int(self.fleet.row_node[row])
        need = max(job.workload.gpus, 1)
        self._free[node] -= need
        heapq.heappush(self._running, (self._now + job.workload.work / thr[row], node, need))
        reward = float(np.log(thr[row] / thr.max())) + penalty
        self._next += 1
        terminated = self._next >= len(self.scenario.jobs)
        return self._observe(), reward, terminated, False, {"node": node, "time_s": self._now}

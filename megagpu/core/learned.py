"""The learned policy with predictions and waiting: the Q-policy says where, ``waiting`` when.

``assess`` is what a scheduler front end calls (the extender's filter and prioritize, explain):
given the policy's state, a workload and a view whose free rows, busy rows and running jobs are
filled, it returns the predicted run time with its spread per candidate and the wait decision
with its reason. ``LearnedPolicy`` is the simulator's ``learned``: it waits when ``assess`` says
so and otherwise places where the Q-policy chooses, with that row's prediction.
"""

from __future__ import annotations

import random

import numpy as np

from megagpu.core import fleet, model, ports, predict, qpolicy, waiting

Memo = dict[str, tuple[np.ndarray, np.ndarray, str]]
"""Workload uid -> its ``predict.action_run_times``, valid for one policy version and fleet."""


def assess(
    policy: qpolicy.QPolicy,
    workload: model.Workload,
    view: fleet.View,
    settings: waiting.Settings | None = None,
    memo: Memo | None = None,
) -> waiting.Assessment:
    """Predictions per candidate (free and busy rows) and whether ``workload`` should wait.

    Never waits in shadow mode (the baseline decides there) or when ``view.wait_left_s`` is 0.
    ``memo``: predictions of other workloads (running, ahead) kept between calls by a caller
    that clears it whenever the policy's version or the fleet changes.
    """
    settings = settings or waiting.Settings()
    f = view.fleet
    memo = {} if memo is None else memo
    seconds, sigma, source = predict.action_run_times(policy, workload, f)

    def run_times(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        aids = f.row_action_id[rows]
        return seconds[aids], sigma[aids]

    def predict_running(job: fleet.Running) -> model.Prediction | None:
        uid = job.workload.uid
        if uid not in memo:
            memo[uid] = predict.action_run_times(policy, job.workload, f)
        secs, sigmas, src = memo[uid]
        aid = int(f.row_action_id[job.row])
        if np.isnan(secs[aid]):
            return None
        return model.Prediction(float(secs[aid]), float(sigmas[aid]), src)

    if policy.params.mode == "shadow":
        view = fleet.View(f, view.rows, view.free_slots, view.queue_length, view.utilization)
    return waiting.plan(workload, view, settings, run_times, predict_running, source)


def earliest_confident(
    run_s: np.ndarray, sigma: np.ndarray, view: fleet.View, bound: float
) -> int | None:
    """Index into ``view.rows`` of the earliest predicted finish, when all are confident.

    Confident: every row's spread is below ``bound``; exploring could then teach little and
    would cost a slower run. None with fewer than two rows or any prediction missing or unsure.

    ``run_s`` and ``sigma``: the predicted run time and its spread of each of ``view.rows``.
    """
    free = len(view.rows)
    if free < 2 or np.isnan(sigma[:free]).any() or sigma[:free].max() >= bound:
        return None
    return int(np.argmin(run_s[:free] * (1.0 + 1e-6 * view.free_share())))


class LearnedPolicy:
    """The Q-policy with predicted run times and learned waiting."""

    def __init__(
        self,
        policy: qpolicy.QPolicy | None = None,
        settings: waiting.Settings | None = None,
        *,
        waits: bool = True,
    ) -> None:
        self.policy = policy or qpolicy.QPolicy()
        self.settings = settings or waiting.Settings()
        self.waits = waits
        """False: predictions only, never a wait (``learned_nowait``, for comparison)."""
        self.name = "learned" if waits else "learned_nowait"
        self._memo: Memo = {}
        self._memo_of: tuple[int, fleet.Fleet | None] = (-1, None)

    def choose(
        self, workload: model.Workload, view: fleet.View, rng: random.Random
    ) -> ports.Choice:
        """Wait for a busy row when that pays, else the Q-policy's choice with its prediction."""
        version, fleet_of = self._memo_of
        if version != self.policy.version or fleet_of is not view.fleet:
            self._memo.clear()
            self._memo_of = (self.policy.version, view.fleet)
        found = assess(self.policy, workload, view, self.settings, self._memo)
        if found.wait:
            values = np.zeros(len(view.rows))
            return ports.Choice(
                found.row,
                "wait",
                values,
                found.row,
                wait=True,
                prediction=found.prediction(found.row),
                start_s=found.start(found.row),
                reason=found.reason,
            )
        choice = self._confident(found, view) or self.policy.choose(workload, view, rng)
        prediction = found.prediction(choice.row)
        reason = (
            f"predicted {waiting.duration(prediction.seconds)} on {view.node_of(choice.row).name}"
            if prediction is not None
            else "no prediction"
        )
        return choice._replace(prediction=prediction, reason=reason)

    def _confident(self, found: waiting.Assessment, view: fleet.View) -> ports.Choice | None:
        """The free row of earliest predicted finish, when every free row's is confident.

        Counted as a decision of the Q-policy (its epsilon decays), as the operator counts every
        placement the extender decided; never in shadow mode (the baseline decides there).
        """
        if self.policy.params.mode == "shadow":
            return None
        index = earliest_confident(found.run_s, found.sigma, view, self.settings.confident)
        if index is None:
            return None
        self.policy.decisions += 1
        row = int(view.rows[index])
        return ports.Choice(row, "exploit", -found.run_s[: len(view.rows)], row)

    def queue_rank(self, workload: model.Workload) -> float:
        """The queue's size bucket of ``workload``'s predicted run time (shorter first).

        The middle one in shadow mode, where the baseline decides (as the operator does).
        """
        if self.policy.params.mode == "shadow":
            return predict.UNKNOWN_BUCKET
        return predict.queue_bucket(predict.best_run_time(self.policy, workload))

    def observe(self, outcome: model.Outcome) -> bool:
        """Learn ``outcome`` (the Q-policy and the size history)."""
        return self.policy.observe(outcome)

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


def assess(
    policy: qpolicy.QPolicy,
    workload: model.Workload,
    view: fleet.View,
    settings: waiting.Settings | None = None,
) -> waiting.Assessment:
    """Predictions per candidate (free and busy rows) and whether ``workload`` should wait.

    Never waits in shadow mode (the baseline decides there) or when ``view.wait_left_s`` is 0.
    """
    settings = settings or waiting.Settings()
    f = view.fleet
    seconds, sigma, source = predict.action_run_times(policy, workload, f)

    def run_times(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        aids = f.row_action_id[rows]
        return seconds[aids], sigma[aids]

    def predict_running(job: fleet.Running) -> model.Prediction | None:
        return predict.run_times(policy, job.workload, f, [job.row])[0]

    if policy.params.mode == "shadow":
        view = fleet.View(f, view.rows, view.free_slots, view.queue_length, view.utilization)
    return waiting.plan(workload, view, settings, run_times, predict_running, source)


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

    def choose(
        self, workload: model.Workload, view: fleet.View, rng: random.Random
    ) -> ports.Choice:
        """Wait for a busy row when that pays, else the Q-policy's choice with its prediction."""
        found = assess(self.policy, workload, view, self.settings)
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
        choice = self.policy.choose(workload, view, rng)
        prediction = found.prediction(choice.row)
        reason = (
            f"predicted {waiting.duration(prediction.seconds)} on {view.node_of(choice.row).name}"
            if prediction is not None
            else "no prediction"
        )
        return choice._replace(prediction=prediction, reason=reason)

    def observe(self, outcome: model.Outcome) -> bool:
        """Learn ``outcome`` (the Q-policy and the size history)."""
        return self.policy.observe(outcome)

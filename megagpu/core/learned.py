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

Memo = dict[str, predict.Predictions]
"""Workload uid -> its ``predict.action_run_times``, valid for one policy version and fleet."""


def assess(
    policy: qpolicy.QPolicy,
    workload: model.Workload,
    view: fleet.View,
    settings: waiting.Settings | None = None,
    memo: Memo | None = None,
    predicted: predict.Predictions | None = None,
    free_times: waiting.FreeTimes | None = None,
) -> waiting.Assessment:
    """Predictions per candidate (free and busy rows) and whether ``workload`` should wait.

    Never waits in shadow mode (the baseline decides there) or when ``view.wait_left_s`` is 0.
    ``memo``: predictions of other workloads (running, ahead) kept between calls by a caller
    that clears it whenever the policy's version or the fleet changes. ``predicted``:
    ``workload``'s own ``predict.action_run_times`` when the caller has it already.
    ``free_times``: busy nodes' free times, kept by a caller that clears them with ``memo``.
    """
    settings = settings or waiting.Settings()
    f = view.fleet
    memo = {} if memo is None else memo
    if predicted is None:
        predicted = predict.action_run_times(policy, workload, f)

    def run_times(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        aids = f.row_action_id[rows]
        return predicted.seconds[aids], predicted.sigma[aids]

    def predict_running(job: fleet.Running) -> model.Prediction | None:
        uid = job.workload.uid
        if uid not in memo:
            memo[uid] = predict.action_run_times(policy, job.workload, f)
        return memo[uid].on(f, job.row)

    if policy.params.mode == "shadow":
        view = fleet.View(f, view.rows, view.free_slots, view.queue_length, view.utilization)
    return waiting.plan(
        workload, view, settings, run_times, predict_running, predicted.source, free_times
    )


EXPLORE_SIZE = 1.0
"""Placement samples speeds only for a job at most e**EXPLORE_SIZE (x2.7) times its class's
typical size (of the sizes it reported or declared): a device tried on a short job teaches as
much as on a long one, and a wrong try costs less. A job without a declared size is believed
typical, so it samples. Chosen on design seeds 100-104 (-1, 0, 1 and 2 tried; 1 best at
gavel-0.3)."""


def explores(policy: qpolicy.QPolicy, workload: model.Workload) -> bool:
    """Whether placement may sample speeds for ``workload`` (only an active policy does)."""
    if policy.params.mode != "active":
        return False
    _, mkey = policy.keys(workload)
    size = policy.sizes.size(mkey, workload)
    return size is not None and policy.sizes.small(mkey, size.amount, EXPLORE_SIZE)


def sampled_finish(
    predicted: predict.Predictions, view: fleet.View, rng: random.Random | None, margin: float
) -> tuple[int, bool] | None:
    """Index into ``view.rows`` of the earliest finish over sampled speeds; whether it explores.

    It explores when it differs from the earliest predicted finish. Thompson sampling: each
    device pair's log speed is drawn once from its learned average and spread. A pair never
    run draws from the calibrated prior's wide spread, so a device the datasheets call slower
    is tried about as often as it could be the faster; one measured slower is soon almost never
    tried. Only a row predicted within ``margin`` (log) of the earliest finish is sampled (the
    Q-policy's ``explore_margin``, about 2x: a device believed far slower is never tried).
    ``rng`` None: no draw, the earliest predicted finish. None with fewer than two rows or a row
    without a prediction (the Q-policy decides then).
    """
    rows = view.rows
    if len(rows) < 2:
        return None
    aids = view.fleet.row_action_id[rows]
    seconds = predicted.seconds[aids]
    if np.isnan(seconds).any():
        return None
    expected = np.log(seconds) + 1e-6 * view.free_share()
    best = int(np.argmin(expected))
    if rng is None:
        return best, False
    draws = {int(a): rng.gauss(0.0, 1.0) for a in np.unique(aids)}
    z = np.asarray([draws[int(a)] for a in aids])
    sampled = expected + predicted.speed_sigma[aids] * z
    chosen = int(np.argmin(np.where(expected <= expected[best] + margin, sampled, np.inf)))
    return chosen, bool(aids[chosen] != aids[best])


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
        """Wait for a busy row when that pays, else place by sampled speeds.

        A candidate without a prediction leaves the choice to the Q-policy.
        """
        version, fleet_of = self._memo_of
        if version != self.policy.version or fleet_of is not view.fleet:
            self._memo.clear()
            self._memo_of = (self.policy.version, view.fleet)
        predicted = predict.action_run_times(self.policy, workload, view.fleet)
        found = assess(self.policy, workload, view, self.settings, self._memo, predicted)
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
        choice = self._sampled(predicted, workload, view, rng) or self.policy.choose(
            workload, view, rng
        )
        prediction = found.prediction(choice.row)
        reason = (
            f"predicted {waiting.duration(prediction.seconds)} on {view.node_of(choice.row).name}"
            if prediction is not None
            else "no prediction"
        )
        return choice._replace(prediction=prediction, reason=reason)

    def _sampled(
        self,
        predicted: predict.Predictions,
        workload: model.Workload,
        view: fleet.View,
        rng: random.Random,
    ) -> ports.Choice | None:
        """The free row of earliest finish over sampled speeds (``sampled_finish``).

        Counted as a decision of the Q-policy (its epsilon decays), as the operator counts every
        placement the extender decided; never in shadow mode (the baseline decides there).
        """
        if self.policy.params.mode == "shadow":
            return None
        draws = rng if explores(self.policy, workload) else None
        found = sampled_finish(predicted, view, draws, self.policy.params.explore_margin)
        if found is None:
            return None
        index, explored = found
        self.policy.decisions += 1
        row = int(view.rows[index])
        values = -predicted.seconds[view.fleet.row_action_id[view.rows]]
        return ports.Choice(row, "explore" if explored else "exploit", values, row)

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

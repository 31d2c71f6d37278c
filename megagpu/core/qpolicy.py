"""The learned Q-policy: Q-learning with experience replay, epsilon-greedy and benchmark priors.

Q(s, a) = Q_table[workload key, action key] + theta[context], a linear value over one-hot
features (``core.features``). An unseen (workload, action) pair backs off to the model-level
table, then to the prior (``core.calibration``): the benchmark speed of the device, calibrated
by the throughputs seen for this workload on other devices. Rewards are
``log(throughput / best known throughput)`` (``core.reward``), recomputed at replay time against
the current best and, for successes, from the pair's current throughput average (so a device
that changed speed is not pulled back).
A device's drift, a log speed factor learned from every workload's outcomes on it, is added to
its values: a device that silently slows is known from its first few outcomes, not per workload.

Sizes (DESIGN 9.10): a throughput is only ever work over run time for an outcome whose size was
reported or declared. An outcome of unknown size never touches a drift or a throughput average:
a failure is learned as a failure, a success as "it ran", with the reward the pair's known speed
(else its prior) implies, so a stream of such outcomes only moves a failed pair back towards what
is known of its speed and can say nothing about which device is faster.

Robustness: a pair's throughput average moves in log space by clipped steps (at most x1.08 per
outcome; a declared size, an estimate, weighs a tenth of a reported one); a device's drift
follows the median of its last nine surprises, by clipped steps, within ``DRIFT_BOUND``, and only
reported sizes move it; rewards stay within ``[floor, ceiling]``. A straggler or a mis-sized run
moves a drift not at all and an average a bounded step, while a lasting change (every outcome
saying the same) gets through after five outcomes.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from megagpu.core import (
    baselines,
    calibration,
    features,
    fleet,
    model,
    ports,
    prior,
    replay,
    reward,
    scaling,
    sizes,
)

MODES = ("active", "shadow", "frozen")
LEARNED_UIDS = 4096
RECENT_REWARDS = 100
STEP = math.log(2)
"""Largest log surprise (x2) one step of a device's drift counts for."""
AVERAGE_STEP = 0.25
"""Largest log surprise (x1.28) one outcome counts for in a pair's throughput average: lasting
changes of a device reach every pair through its drift, so averages can afford to be slow."""
DECLARED_WEIGHT = 0.1
"""Weight of a declared size in a throughput average against a reported one: declarations are
estimates (off by x0.5 to x2 is ordinary); ten of them count as one measurement."""
SURPRISES = 9
"""A device's drift follows the median of its last 9 surprises: up to four stragglers or
mis-sized runs move it not at all, a lasting change (every outcome saying it) after five."""
DEAD = 0.15
"""Median surprises within x1.16 leave a drift where it is: noise, not a change of the device."""
ESTABLISHED = 2.0
"""Evidence (in reported sizes) a pair's average needs before its surprises inform a drift."""
MEASURED = 3.0
"""Outcomes of known size a pair and the best one need before their measured gap, not only the
value margin, decides whether the pair is explored."""
EXPLORE_FLOOR = 0.1
"""Once both are measured, exploration tries a pair only while its measured throughput is within
``EXPLORE_FLOOR + EXPLORE_Z`` standard errors of the gap (log) of the best's: a pair measured
clearly slower is dropped, near ties (0.1 ~ 1.1x) and pairs too noisy to tell are not.
Constants, not ``Params``: a saved state's parameters must load in older releases."""
EXPLORE_Z = 2.0
RECHECK = 0.2
"""Share of exploration draws that ignore the measured gap (the value margin alone decides), so
a device measured slower is retried now and then and one that got faster is found: with the
floor epsilon and two options, about one decision in 200."""
DRIFT_BOUND = math.log(16)
"""A device's drift stays within x1/16 .. x16 of the speed its throughputs were learned at."""


@dataclass(frozen=True)
class Params:
    """Hyper-parameters of the Q-policy (the GpuSchedulingPolicy spec)."""

    mode: str = "active"
    """active decides and learns; shadow learns while a baseline decides; frozen only decides."""
    baseline: str = "least_allocated"
    """The scheduler that decides in shadow mode (``core.baselines.BASELINES``)."""
    learning_rate: float = 0.3
    """Step size alpha; high because rewards are nearly deterministic per (workload, device)."""
    discount: float = 0.0
    """gamma: placements are nearly independent, so the default is myopic."""
    epsilon_start: float = 0.2
    """Initial exploration rate."""
    epsilon_min: float = 0.05
    """Exploration floor, so that a device that changes speed is noticed (one measured clearly
    slower only through ``RECHECK`` draws; an exploited one through its drift)."""
    epsilon_decay: float = 0.995
    """Multiplied into epsilon after each decision."""
    ucb_bonus: float = 0.0
    """Weight c of the bonus c * sqrt(ln(1 + N) / (1 + n)); 0 turns it off."""
    replay_capacity: int = 256
    """Transitions kept; small so that stale experience ages out within a few hundred jobs."""
    replay_batch: int = 16
    """Transitions replayed per update."""
    context_rate: float = 0.0
    """Step size of the load-context weights; 0 (off) by default: on the Gavel presets the
    shared context weights cost more JCT than they gained."""
    explore_margin: float = 0.7
    """Exploration only tries devices whose value is within this of the best (0.7 ~ 2x slower),
    so that a long job is never sent to a device believed to be far slower; a measured device
    must also pass ``EXPLORE_FLOOR`` (but for ``RECHECK`` draws)."""
    throughput_ema: float = 0.3
    """Weight of a new observation in the per-(workload, device) throughput average."""
    drift_rate: float = 0.3
    """Step size of each device's drift: a log speed factor shared by every workload on it, so
    that a device that slows down (or speeds up) is known from any workload's outcome; 0 = off."""
    rewards: reward.RewardWeights = field(default_factory=reward.RewardWeights)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise model.ValidationError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.baseline not in baselines.BASELINES:
            raise model.ValidationError(
                f"baseline must be one of {baselines.BASELINES}, got {self.baseline!r}"
            )
        model.check_finite("explore_margin", self.explore_margin)
        for name in (
            "learning_rate",
            "epsilon_start",
            "epsilon_min",
            "context_rate",
            "throughput_ema",
            "drift_rate",
            "discount",
        ):
            value = model.check_finite(name, getattr(self, name))
            if value > 1:
                raise model.ValidationError(f"{name} must be in [0, 1], got {value}")
        if not 0 < self.epsilon_decay <= 1:
            raise model.ValidationError(
                f"epsilon_decay must be in (0, 1], got {self.epsilon_decay}"
            )
        model.check_finite("ucb_bonus", self.ucb_bonus)
        if self.replay_capacity < 1 or self.replay_batch < 0:
            raise model.ValidationError("replay capacity must be >= 1 and batch >= 0")


class Cell:
    """One learned (key, action) entry: value, visits, throughput average and its spread."""

    __slots__ = ("q", "n", "throughput", "seen", "spread")

    def __init__(
        self,
        q: float,
        n: int = 0,
        throughput: float = 0.0,
        seen: float = 0.0,
        spread: float = 0.0,
    ) -> None:
        self.q, self.n, self.throughput = q, n, throughput
        self.seen = seen
        """Outcomes of known size averaged into ``throughput`` (a declared size counts
        ``DECLARED_WEIGHT``): a running mean of the first ones, then a moving average."""
        self.spread = spread
        """Variance of an outcome's log throughput around the average (averaged the same way,
        unclipped: a straggler widens it, which only keeps the pair explored longer); nan when
        unknown (a state saved before it was kept)."""

    def measured(self) -> bool:
        """Enough outcomes of known size, a throughput and a known spread to compare."""
        return self.seen >= MEASURED and self.throughput > 0 and not math.isnan(self.spread)

    def squared_error(self, ema: float) -> float:
        """Variance of the average itself: of a mean of ``seen``, or at least of the EMA's."""
        return self.spread * max(1 / self.seen, ema / (2 - ema))


Table = dict[str, dict[str, Cell]]


class QPolicy(calibration.BenchmarkPrior):
    """Q-learning scheduler with replay, epsilon-greedy exploration and benchmark priors."""

    name = "learned"

    def __init__(
        self,
        params: Params | None = None,
        baseline: ports.Policy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.params = params or Params()
        self._rng = rng or random.Random(0)
        """Draws the replay minibatches (decisions use the rng passed to ``choose``)."""
        self.baseline = baseline
        """Decides in shadow mode (default: ``params.baseline``)."""
        self.workloads: Table = {}
        self.models: Table = {}
        self.theta = [0.0] * features.CONTEXTS
        self.replay = replay.ReplayBuffer(self.params.replay_capacity)
        self.learned_uids: deque[str] = deque(maxlen=LEARNED_UIDS)
        self._learned_set: set[str] = set()
        self.classes: list[str] = []
        self.profiles: dict[str, tuple[str, float, str, str]] = {}
        """Workload key -> (type, compute intensity, precision, backends), for the prior."""
        self.benchmarks: dict[str, tuple[float, float, float, float]] = {}
        """Action key -> (backend efficiency, fp16 TFLOPS, fp32 TFLOPS, GB/s)."""
        self.surprises: dict[str, deque[float]] = {}
        """Action key -> its last ``SURPRISES`` log throughput ratios to the pairs' averages."""
        self.drift: dict[str, float] = {}
        """Action key -> log speed factor since its throughputs were learned; Q values, cell
        throughputs and replayed throughputs are all net of it, ``values`` adds it."""
        self.sizes = sizes.History()
        """Sizes reported per model key and the errors of declarations (for predictions)."""
        self.decisions = 0
        self.updates = 0
        self.version = 0
        self.reward_ema = 0.0
        self.recent_rewards: deque[float] = deque(maxlen=RECENT_REWARDS)
        self._fleet: fleet.Fleet | None = None
        """The fleet whose benchmarks were learned last (held, so that its identity is unique)."""
        self._speeds: dict[tuple[Any, ...], float] = {}
        """The prior's speed by its inputs (profile, benchmarks): a pure function, memoized."""
        self._scaling: scaling.DeviceScaling | None = None
        """How devices scale with the GPU count (``calibration``'s to build and keep)."""
        self._counts: scaling.CountScaling | None = None
        """How each device scales between GPU counts (``calibration``'s to build and keep)."""
        self._actions: dict[tuple[str, str, tuple[str, ...]], np.ndarray] = {}
        self._actions_of: tuple[int, Params | None] = (-1, None)
        """Per-action values by (workload key, model key, action keys), valid for one
        (version, params): they change only when the policy learns or its benchmarks do."""

    # --- reading values ----------------------------------------------------------------
    @property
    def epsilon(self) -> float:
        """Current exploration rate."""
        p = self.params
        if p.mode == "frozen":
            return 0.0
        return max(p.epsilon_min, p.epsilon_start * p.epsilon_decay**self.decisions)

    @property
    def phase(self) -> str:
        """Exploring while epsilon is high, Converged once rewards are steady, else Exploiting."""
        if self.epsilon > 2 * self.params.epsilon_min:
            return "Exploring"
        recent = list(self.recent_rewards)
        if len(recent) >= 50:
            half = len(recent) // 2
            older, newer = recent[:half], recent[half:]
            if abs(sum(newer) / len(newer) - sum(older) / len(older)) < 0.05:
                return "Converged"
        return "Exploiting"

    def model_class(self, name: str) -> str:
        """The class a model is learned under; beyond the cap, new models share ``other``."""
        if name in self.classes:
            return name
        if len(self.classes) < features.MAX_MODEL_CLASSES:
            self.classes.append(name)
            return name
        return features.OTHER_CLASS

    def keys(self, workload: model.Workload) -> tuple[str, str]:
        """(workload key, model key) of ``workload``; remembers its profile for the prior."""
        cls = self.model_class(workload.model)
        wkey = features.workload_key(workload, cls)
        self.profiles.setdefault(
            wkey,
            (
                workload.workload_type,
                workload.compute_intensity,
                workload.precision,
                ",".join(workload.backends),
            ),
        )
        return wkey, features.model_key(workload, cls)

    def value(
        self, wkey: str, mkey: str, akey: str, scale: calibration.Scale | None = None
    ) -> float:
        """Q of an action for a workload, before the context term."""
        cell = self.workloads.get(wkey, {}).get(akey)
        if cell is not None and cell.n:
            return cell.q
        cell = self.models.get(mkey, {}).get(akey)
        if cell is not None and cell.n:
            return cell.q
        return self.prior_value(wkey, mkey, akey, scale)

    def know(self, f: fleet.Fleet) -> None:
        """Learn the benchmarks of every action key in ``f`` (for the prior), once per fleet."""
        if f is self._fleet:
            return
        self._fleet = f
        self._actions.clear()
        for aid, akey in enumerate(f.action_keys):
            rows = np.flatnonzero(f.row_action_id == aid)
            speeds = (
                float(f.row_fp16_tflops[rows].max()),
                float(f.row_fp32_tflops[rows].max()),
                float(f.row_mem_gbps[rows].max()),
            )
            measured = (
                float(f.row_efficiency[rows].max()),
                *(speeds if any(speeds) else calibration.UNMEASURED),
            )
            self._know_benchmarks(akey, measured)

    def values(self, workload: model.Workload, view: fleet.View) -> np.ndarray:
        """Q of every candidate row, with the context term, UCB bonus and best-fit tie-break."""
        self.know(view.fleet)
        wkey, mkey = self.keys(workload)
        aids = view.fleet.row_action_id[view.rows]
        per_action = self._action_values(wkey, mkey, view.fleet.action_keys)
        share = view.free_share()
        ctx = features.context_buckets(share, view.queue_length)
        return per_action[aids] + np.asarray(self.theta)[ctx] - 1e-4 * share

    def _action_values(self, wkey: str, mkey: str, action_keys: tuple[str, ...]) -> np.ndarray:
        """Q of each action key for a workload, with its drift and UCB bonus (memoized)."""
        if self._actions_of[0] != self.version or self._actions_of[1] is not self.params:
            self._actions.clear()
            self._actions_of = (self.version, self.params)
        key = (wkey, mkey, action_keys)
        found = self._actions.get(key)
        if found is not None:
            return found
        visits = self.workloads.get(wkey, {})
        total = sum(c.n for c in visits.values())
        scale = self.scale(wkey, mkey)
        per_action = np.zeros(len(action_keys))
        for aid, akey in enumerate(action_keys):
            per_action[aid] = self.value(wkey, mkey, akey, scale) + self.drift.get(akey, 0.0)
            if self.params.ucb_bonus and self.params.mode != "frozen":
                n = visits[akey].n if akey in visits else 0
                per_action[aid] += self.params.ucb_bonus * math.sqrt(math.log1p(total) / (1 + n))
        if len(self._actions) >= calibration.MEMO_ENTRIES:
            self._actions.clear()
        self._actions[key] = per_action
        return per_action

    def _measured_verdicts(
        self, workload: model.Workload, action_keys: tuple[str, ...], best: int
    ) -> np.ndarray:
        """Per action key, against action ``best``: 1 worth exploring, 0 not.

        0 when measured clearly slower; nan when it or the best is not measured at one level
        (the workload key, else its model) and the value margin alone decides.
        """
        wkey, mkey = self.keys(workload)
        verdicts = np.full(len(action_keys), np.nan)
        ema = self.params.throughput_ema
        for table, key in ((self.workloads, wkey), (self.models, mkey)):
            row = table.get(key, {})
            reference = row.get(action_keys[best])
            if reference is None or not reference.measured():
                continue
            for aid, akey in enumerate(action_keys):
                cell = row.get(akey)
                if not np.isnan(verdicts[aid]) or cell is None or not cell.measured():
                    continue
                gap = math.log(reference.throughput / cell.throughput) + (
                    self.drift.get(action_keys[best], 0.0) - self.drift.get(akey, 0.0)
                )
                noise = math.sqrt(cell.squared_error(ema) + reference.squared_error(ema))
                verdicts[aid] = gap <= EXPLORE_FLOOR + EXPLORE_Z * noise
        return verdicts

    # --- deciding ----------------------------------------------------------------------
    def choose(
        self, workload: model.Workload, view: fleet.View, rng: random.Random
    ) -> ports.Choice:
        """Pick a row: epsilon-greedy over device classes, best fit within the class."""
        if len(view.rows) == 0:
            raise ports.NoCandidatesError(f"no feasible node for {workload.uid}")
        values = self.values(workload, view)
        best = int(np.argmax(values))
        mode = "exploit"
        if len(view.rows) == 1:
            mode = "forced"
        elif rng.random() < self.epsilon:
            aids = view.fleet.row_action_id[view.rows]
            near = values >= values[best] - self.params.explore_margin
            if rng.random() >= RECHECK:
                keys = view.fleet.action_keys
                verdicts = self._measured_verdicts(workload, keys, int(aids[best]))[aids]
                near &= np.isnan(verdicts) | (verdicts == 1.0)
            options = np.unique(aids[near])
            pick = options[rng.randrange(len(options))]
            masked = np.where(aids == pick, values, -np.inf)
            explored = int(np.argmax(masked))
            if explored != best:
                best, mode = explored, "explore"
        self.decisions += 1
        learned_row = int(view.rows[best])
        if self.params.mode == "shadow":
            if self.baseline is None or self.baseline.name != self.params.baseline:
                self.baseline = baselines.make_baseline(self.params.baseline)
            base = self.baseline.choose(workload, view, rng)
            index = int(np.flatnonzero(view.rows == base.row)[0])
            regret = float(values[best] - values[index])
            return ports.Choice(base.row, base.mode, values, learned_row, max(regret, 0.0))
        return ports.Choice(learned_row, mode, values, learned_row, 0.0)

    # --- learning ----------------------------------------------------------------------
    def observe(self, outcome: model.Outcome) -> bool:
        """Learn one outcome exactly once: replay store, throughput average and TD updates."""
        if self.params.mode == "frozen" or outcome.uid in self._learned_set:
            return False
        self.remember_learned([outcome.uid])
        wkey, mkey = self.keys(outcome.workload)
        akey = features.action_key(outcome.backend, outcome.device_class)
        self.benchmarks.setdefault(
            akey, (prior.efficiency(outcome.backend), *calibration.UNMEASURED)
        )
        self.sizes.observe(mkey, outcome)
        throughput = 0.0
        if outcome.sized:
            reported = outcome.work_source == "reported"
            throughput = self._net_of_drift(wkey, akey, outcome.throughput, moves=reported)
            weight = 1.0 if reported else DECLARED_WEIGHT
            for table, key in ((self.workloads, wkey), (self.models, mkey)):
                cell = self._cell(table, key, wkey, mkey, akey)
                if cell.seen > 0 and cell.throughput > 0:
                    error = math.log(throughput / cell.throughput) ** 2
                    rate = weight * max(self.params.throughput_ema, 1 / cell.seen)
                    if math.isnan(cell.spread):
                        cell.spread = error
                    else:
                        cell.spread += min(rate, 1.0) * (error - cell.spread)
                cell.seen += weight
                mean = 1 / cell.seen >= self.params.throughput_ema
                rate = weight * max(self.params.throughput_ema, 1 / cell.seen)
                cell.throughput = _toward(cell.throughput, throughput, rate, clip=not mean)
            self._measured_again(wkey, mkey, akey)
        item = replay.Transition(
            wkey,
            mkey,
            akey,
            outcome.context,
            throughput,
            outcome.succeeded,
            outcome.deadline_missed,
        )
        self.replay.add(item)
        # best known throughput per workload key; fixed while this outcome is learned
        references: dict[str, float] = {}
        value = self._learn(item, references)
        self.recent_rewards.append(value)
        self.reward_ema = value if self.updates == 0 else 0.95 * self.reward_ema + 0.05 * value
        for sample in self.replay.sample(self.params.replay_batch, self._rng):
            self._learn(sample, references, replayed=True)
        self.updates += 1
        self.version += 1
        return True

    def _net_of_drift(self, wkey: str, akey: str, throughput: float, moves: bool) -> float:
        """Move the device's drift toward this outcome's surprise; the throughput net of it.

        The surprise is measured against the pair's own average, so only pairs seen before
        inform the drift (a new pair says nothing about change), and the median of the
        device's last ``SURPRISES`` (stragglers are outvoted). ``moves``: the size was measured
        (reported); a declared size is too rough to tell a device's change from its own error,
        so it never moves a drift.
        """
        drift = self.drift.get(akey, 0.0)
        cell = self.workloads.get(wkey, {}).get(akey)
        if moves and cell is not None and cell.seen >= ESTABLISHED:
            recent = self.surprises.setdefault(akey, deque(maxlen=SURPRISES))
            recent.append(math.log(throughput / cell.throughput))
            surprise = float(np.median(recent)) - drift if len(recent) == SURPRISES else 0.0
            if abs(surprise) > DEAD:
                drift += self.params.drift_rate * _clip(surprise, STEP)
                drift = _clip(drift, DRIFT_BOUND)
                self.drift[akey] = drift
        return throughput / math.exp(drift)

    def _reward(self, t: replay.Transition, reference: float, replayed: bool) -> float:
        """The reward of a transition (throughput 0 with success: a run of unknown size).

        A replayed success, or one of unknown size, is scored with the pair's current throughput
        average, not the one it had then: outcomes from before a device changed speed must not
        pull it back. A success of unknown size on a pair of no known speed gets its prior.
        """
        throughput = t.throughput
        if t.succeeded and (replayed or throughput <= 0):
            cell = self.workloads.get(t.workload_key, {}).get(t.action_key)
            throughput = cell.throughput if cell is not None and cell.throughput > 0 else throughput
        if t.succeeded and throughput <= 0:
            value = self.prior_value(t.workload_key, t.model_key, t.action_key)
            value = min(max(value, self.params.rewards.floor), self.params.rewards.ceiling)
            return value - (self.params.rewards.deadline_penalty if t.deadline_missed else 0.0)
        return reward.reward(
            throughput,
            reference,
            succeeded=t.succeeded,
            deadline_missed=t.deadline_missed,
            weights=self.params.rewards,
        )

    def reward_of(self, outcome: model.Outcome) -> float:
        """The reward ``outcome`` gets against what the policy knows now (nothing is learned)."""
        wkey, mkey = self.keys(outcome.workload)
        akey = features.action_key(outcome.backend, outcome.device_class)
        throughput = outcome.throughput / math.exp(self.drift.get(akey, 0.0))
        item = replay.Transition(
            wkey, mkey, akey, 0, throughput, outcome.succeeded, outcome.deadline_missed
        )
        return self._reward(item, self.reference(wkey, mkey), replayed=False)

    def remember_learned(self, uids: Iterable[str]) -> None:
        """Mark outcome UIDs as learned (restoring a saved state)."""
        for uid in uids:
            if len(self.learned_uids) == self.learned_uids.maxlen:
                self._learned_set.discard(self.learned_uids[0])
            self.learned_uids.append(uid)
            self._learned_set.add(uid)

    def _cell(self, table: Table, key: str, wkey: str, mkey: str, akey: str) -> Cell:
        row = table.setdefault(key, {})
        if akey not in row:
            row[akey] = Cell(self.value(wkey, mkey, akey))
        return row[akey]

    def _learn(
        self, t: replay.Transition, references: dict[str, float], replayed: bool = False
    ) -> float:
        """One TD step on both tables and the context weights; returns the reward.

        A replayed success is scored with the pair's current throughput average, not the one
        it had then: outcomes from before a device changed speed must not pull it back.
        """
        p = self.params
        if t.workload_key not in references:
            references[t.workload_key] = self.reference(t.workload_key, t.model_key)
        r = self._reward(t, references[t.workload_key], replayed)
        target = r
        if p.discount:
            known = self.workloads.get(t.workload_key, {})
            target += p.discount * max((c.q for c in known.values()), default=0.0)
        theta = self.theta[t.context]
        delta = 0.0
        for table, key in ((self.workloads, t.workload_key), (self.models, t.model_key)):
            cell = self._cell(table, key, t.workload_key, t.model_key, t.action_key)
            error = target - (cell.q + theta)
            cell.q += p.learning_rate * error
            cell.n += 1
            delta = delta or error
        self.theta[t.context] += p.context_rate * delta
        return r


def _clip(value: float, bound: float) -> float:
    return min(max(value, -bound), bound)


def _toward(average: float, observed: float, rate: float, clip: bool = True) -> float:
    """A throughput average moved toward ``observed`` in log space by a (clipped) step."""
    if average <= 0 or rate >= 1:
        return observed
    step = math.log(observed / average)
    return average * math.exp(rate * (_clip(step, AVERAGE_STEP) if clip else step))

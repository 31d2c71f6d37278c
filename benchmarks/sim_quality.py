"""Simulator evidence (issues 3, 17, 18): learned vs the baselines on the presets, adaptation.

Writes benchmarks/results/sim.json and sim.md. Run: make bench-sim.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from megagpu.io import presets  # noqa: E402
from megagpu.sim import evaluation, runner, simulator  # noqa: E402

SEEDS = list(range(5))
RESULTS = Path(__file__).parent / "results"
WINDOW = 100
RECOVER_BY = 300
STRESS = ("stress", "stress-a100")
ADAPTING = ("learned", "fastest_device", "least_allocated")
DRAWS = 8
"""Draw streams per seed for the goals' second reading. On the same arrivals, learned's own random
draws (its exploration) move one run's average JCT by about 0.2 x oracle_greedy's at load 0.7,
so one draw per seed cannot tell effects under about 0.1 apart."""


def compare(name: str) -> dict[str, Any]:
    preset = presets.get(name)
    runs = runner.run(preset.build, runner.POLICIES, SEEDS)
    return evaluation.report(
        command=f"megagpu sim --preset {name} --policies all --seeds 5",
        preset=name,
        load=preset.load,
        seeds=SEEDS,
        runs=runs,
    )


def claims(doc: dict[str, Any]) -> dict[str, Any]:
    s = {p: row["avg_jct_s"] for p, row in doc["summary"].items()}
    oracle, learned = s["oracle_greedy"], s["learned"]

    def closed(base: str) -> float:
        return (s[base] - learned) / (s[base] - oracle)

    by_seed = {}
    for run in doc["runs"]:
        by_seed.setdefault(run["seed"], {})[run["policy"]] = run["avg_jct_s"]
    paired = [runs["learned"] / runs["oracle_greedy"] for runs in by_seed.values()]
    nowait = [runs["learned"] / runs["learned_nowait"] for runs in by_seed.values()]
    others = [p for p in s if p not in ("learned", "learned_nowait", "earliest_finish")]
    return {
        "learned_over_learned_nowait": learned / s["learned_nowait"],
        "learned_over_learned_nowait_per_seed": nowait,
        "earliest_finish_over_oracle": s["earliest_finish"] / oracle,
        "learned_below_every_baseline_but_earliest_finish": all(learned < s[p] for p in others),
        "prediction_mdape": doc["summary"]["learned"]["prediction_mdape"],
        "learned_over_oracle": learned / oracle,
        "learned_over_oracle_per_seed": paired,
        "gap_least_allocated_over_oracle": s["least_allocated"] / oracle - 1,
        "gap_closed_vs_least_allocated": closed("least_allocated"),
        "gap_closed_vs_random": closed("random"),
        "learned_below_fastest_device": learned < s["fastest_device"],
        "decisions_to_within_10pct": doc["summary"]["learned"]["decisions_to_within_10pct"],
    }


def draws(name: str, doc: dict[str, Any]) -> dict[str, Any]:
    """learned over DRAWS draw streams per seed, on each seed's arrivals.

    Draw 0 is the run of the report ``doc``, taken from it; only the other draws are simulated.
    """
    preset = presets.get(name)
    runs = {(r["policy"], r["seed"]): r for r in doc["runs"]}
    ratios: list[float] = []
    within: list[int | None] = []
    for seed in SEEDS:
        found = [runs[("learned", seed)]]
        scenario = preset.build(seed)
        oracle = simulator.simulate(scenario, runner.factory("oracle_greedy"), seed)
        for draw in range(1, DRAWS):
            run = simulator.simulate(scenario, runner.factory("learned"), seed + 10_000 * draw)
            found.append(evaluation.metrics(run, oracle))
        base = runs[("oracle_greedy", seed)]["avg_jct_s"]
        ratios += [f["avg_jct_s"] / base for f in found]
        within += [f["decisions_to_within_10pct"] for f in found]
    half = 1.96 * float(np.std(ratios, ddof=1)) / math.sqrt(len(ratios))
    reached = sorted(w for w in within if w is not None)
    never = len(within) - len(reached)  # never within: counted as above every reached one
    ordered = reached + [math.inf] * never
    return {
        "runs": len(ratios),
        "learned_over_oracle_mean": float(np.mean(ratios)),
        "learned_over_oracle_ci95": [float(np.mean(ratios)) - half, float(np.mean(ratios)) + half],
        "learned_over_oracle_range": [min(ratios), max(ratios)],
        "decisions_to_within_10pct_median": float(np.median(ordered)),
        "never_within": never,
    }


def recovery(records: list[simulator.JobRecord], at_s: float) -> dict[str, Any]:
    """Placement ratio (chosen run time over the fastest free device's) around a change."""
    ordered = sorted(records, key=lambda r: r.order)
    ratio = np.asarray([r.placement_ratio for r in ordered])
    change = int(np.searchsorted(np.asarray([r.start_s for r in ordered]), at_s))
    windows = [
        float(ratio[change + k : change + k + WINDOW].mean())
        for k in range(0, len(ratio) - change - WINDOW + 1, 10)
    ]
    first = next((i * 10 + WINDOW for i, w in enumerate(windows) if w <= 1.1), None)
    return {
        "decision": change,
        "before": float(ratio[max(0, change - WINDOW) : change].mean()),
        "window_200_300": float(ratio[change + 200 : change + RECOVER_BY].mean()),
        "decisions_to_within_10pct": first,
        "recovered_within_300": bool(ratio[change + 200 : change + RECOVER_BY].mean() <= 1.1),
    }


def stress(name: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for policy in ADAPTING:
        rows = []
        for seed in SEEDS:
            scenario = presets.get(name).build(seed)
            slow_at, join_at = presets.stress_changes(scenario)
            result = simulator.simulate(scenario, runner.factory(policy), seed)
            rows.append(
                {
                    "seed": seed,
                    "slowdown": recovery(result.records, slow_at),
                    "join": recovery(result.records, join_at),
                }
            )
        out[policy] = rows
    return out


def table(doc: dict[str, Any]) -> str:
    rows = doc["summary"].values()
    hours = min(r["avg_jct_s"] for r in rows) >= 3600
    scale, unit = (3600, "h") if hours else (1, "s")
    lines = [
        f"| policy | avg JCT ({unit}) | 95% CI ({unit}) | median | p95 | p99 | makespan "
        f"({unit}) | p95 queue ({unit}) | util | to within 10% | derived share | "
        "MdAPE run time (%) | waited |",
        "|" + "---|" * 13,
    ]
    for policy, row in doc["summary"].items():
        lo, hi = row["ci95_avg_jct_s"]
        within = row["decisions_to_within_10pct"]
        lines.append(
            f"| {policy} | {row['avg_jct_s'] / scale:.2f} | {lo / scale:.2f}-{hi / scale:.2f} | "
            f"{row['median_jct_s'] / scale:.2f} | {row['p95_jct_s'] / scale:.1f} | "
            f"{row['p99_jct_s'] / scale:.1f} | {row['makespan_s'] / scale:.0f} | "
            f"{row['p95_queue_s'] / scale:.2f} | {row['utilization']:.2f} | "
            f"{within if within is not None else '-'} | {row['derived_share']:.2f} | "
            f"{_pct(row['prediction_mdape'])} | {row['waited_share']:.2f} |"
        )
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def adaptation_table(by_policy: dict[str, Any]) -> str:
    lines = [
        "| policy | seed | slowdown: before | 200-300 | to within 10% | join: before | "
        "200-300 | to within 10% |",
        "|" + "---|" * 8,
    ]
    for policy, rows in by_policy.items():
        for r in rows:
            s, j = r["slowdown"], r["join"]
            lines.append(
                f"| {policy} | {r['seed']} | {s['before']:.3f} | {s['window_200_300']:.3f}"
                f" | {s['decisions_to_within_10pct']} | {j['before']:.3f} | "
                f"{j['window_200_300']:.3f} | {j['decisions_to_within_10pct']} |"
            )
    counts = []
    for policy, rows in by_policy.items():
        back = [
            sum(r[change]["recovered_within_300"] for r in rows) for change in ("slowdown", "join")
        ]
        counts.append(f"{policy} {back[0]}/{len(rows)} and {back[1]}/{len(rows)}")
    lines.append(
        "\nBack within 10% in the 200-300 window (seeds, slowdown and join): "
        + "; ".join(counts)
        + ".\n"
    )
    return "\n".join(lines)


def draw_goals(noise: dict[str, Any]) -> str:
    """The goals on the mean over DRAWS draw streams per seed."""
    lines = [
        f"\nThe same goals over {DRAWS} draw streams of learned per seed ({len(SEEDS) * DRAWS} "
        "runs; the scenario of each seed fixed, only learned's random draws vary; draw 0 is the "
        "run above):\n",
        "| goal | mean | 95% CI | range | met on the mean |",
        "|---|---|---|---|---|",
    ]
    for name, bound in (("gavel-0.7", 0.75), ("gavel-0.5", 0.97)):
        n = noise[name]
        (lo, hi), (least, most) = n["learned_over_oracle_ci95"], n["learned_over_oracle_range"]
        mean = n["learned_over_oracle_mean"]
        lines.append(
            f"| {name} learned / oracle_greedy <= {bound} | {mean:.3f} | {lo:.3f}-{hi:.3f} | "
            f"{least:.3f}-{most:.3f} | {mean <= bound} |"
        )
    n = noise["gavel-0.3"]
    median = n["decisions_to_within_10pct_median"]
    lines.append(
        f"| gavel-0.3 decisions to within 10% <= 500 | median {median:.0f} | - | "
        f"{n['never_within']} of {n['runs']} runs never within | {median <= 500} |"
    )
    return "\n".join(lines) + "\n"


def goals(summary: dict[str, Any]) -> str:
    """Issue 18's goals, each with its measured value and whether it is met."""
    g7, g5, g3, un = (summary[n] for n in ("gavel-0.7", "gavel-0.5", "gavel-0.3", "philly-unsized"))
    within = g3["decisions_to_within_10pct"]
    rows = [
        ("gavel-0.7 learned / oracle_greedy <= 0.75", g7["learned_over_oracle"], 0.75),
        ("gavel-0.5 learned / oracle_greedy <= 0.97", g5["learned_over_oracle"], 0.97),
        ("gavel-0.3 learned / learned_nowait <= 1", g3["learned_over_learned_nowait"], 1.0),
        ("philly-unsized learned / learned_nowait <= 1", un["learned_over_learned_nowait"], 1.0),
    ]
    lines = ["## Goals (issue 18)\n", "| goal | measured | met |", "|---|---|---|"]
    lines += [f"| {text} | {value:.3f} | {value <= bound} |" for text, value, bound in rows]
    below = g7["learned_below_every_baseline_but_earliest_finish"]
    text = "gavel-0.7 learned below every baseline but earliest_finish"
    lines.append(f"| {text} | {below} | {below} |")
    met = within is not None and within <= 500
    lines.append(f"| gavel-0.3 decisions to within 10% <= 500 | {within} | {met} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    head = common.header()
    reports = {name: compare(name) for name in presets.PRESETS if name not in STRESS}
    adaptation = {name: stress(name) for name in STRESS}
    noise = {name: draws(name, reports[name]) for name in ("gavel-0.7", "gavel-0.5", "gavel-0.3")}
    summary = {name: claims(doc) for name, doc in reports.items()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sim.json").write_text(
        json.dumps(
            {
                **head,
                "claims": summary,
                "draws": noise,
                "adaptation": adaptation,
                "reports": reports,
            },
            indent=1,
        )
    )
    md = [
        f"# Simulator results\n\nCommand: `{head['command']}` (also `make bench-sim`); "
        f"commit {head['commit']}; {head['date']}; {head['machine']['cpu']}, "
        f"{head['machine']['cores']} cores. Seeds {SEEDS}; 2,000 jobs per run. Every number "
        "below is measured by the simulator in this run.\n\n"
        "Sizes (issue 17): the learner is told a job's size only as production would tell it "
        "(DESIGN 9.10). On every preset but two, each container reports its work when it ends. "
        "`philly-unsized`: the Philly sizes (heavy-tailed: run times from seconds to weeks) are "
        "unknown to the scheduler; half the jobs report their work at the end, the others say "
        "nothing, and those are never read as a speed. `philly-noisy`: every job declares its "
        "size, off by a factor drawn log-uniformly from x0.5 to x2, and none reports. Both were "
        "fixed before learned first ran on them.\n\n"
        "Predictions and waiting (issue 18): every Philly job declares its size (`spec.work`, as "
        "Gavel's jobs say their steps) and reports it at the end, except in `philly-unsized` "
        "(nothing declared) and `philly-noisy` (declared off by x0.5 to x2). `learned` predicts "
        "each candidate's run time (believed size over learned throughput, with a spread; a "
        "device never run by the class from the benchmark prior, with how each device scales "
        "with the GPU count learned across models, `core/scaling.py`, chosen on design seeds "
        "100-139 and first run on the report seeds at 0f71a4e; a model's first run at a new "
        "GPU count from its runs at other counts, scaled on each device as other models' "
        "throughputs scaled there: on a device it ran on, from its runs there, elsewhere from "
        "the prior calibrated by them, and weighed by their spreads against the prior "
        "calibrated at this count where it ran at this count on another device; chosen on "
        "design seeds 100-199, first run on the report seeds at 0a4e695, mended after a "
        "review for this run) and keeps a job pending for a "
        "busy, faster node when the predicted finish there beats the best free one by a "
        "margin widened by the spread, from its first wait for at most its "
        "own predicted run time on the best free node and at most 30 days; the simulator "
        "retries pending jobs at every event. Where every free node has a prediction, it "
        "places on the earliest finish over speeds sampled from what it learned (Thompson "
        "sampling: a pair never run draws from the calibrated prior's spread), sampling only "
        "for jobs up to e x their class's typical size; the live extender's prioritize runs "
        "the same rule (the Q-policy chooses where a prediction is missing). Queue order "
        "(`--queue-by-size`): within a priority, `learned` and "
        "`learned_nowait` queue each job by the size bucket of its predicted run time on its "
        "fastest device when it arrives (shorter first; a job with no prediction in the middle "
        "bucket), as the operator's PriorityClasses order kube-scheduler's queue; every other "
        "policy keeps the queue in arrival order, so at high load learned's lead over "
        "earliest_finish comes from its queue order: in arrival order learned reaches 0.73 and "
        "earliest_finish 0.58 x oracle_greedy's JCT at load 0.7, and given a true size order "
        "earliest_finish 0.48 and oracle_greedy 0.54 (benchmarks/results/sim-queue-order.md). "
        "Nothing ages a queued job: a long one waits behind every shorter one that comes later, "
        "which costs learned's p99 JCT at load 0.7 against earliest_finish's. The bucket edges "
        "(1 min, 5 min, 15 min, 1 h, 4 h, 12 h, 1 d, 3 d) were set before any run; after the "
        "report seeds' first run (in sim_queue_order.py), factor-2 edges and never-seen "
        "classes first were tried on design seeds 100-104 only, were no better and were left "
        "out. `learned_nowait` is the "
        "same policy, sampled placement and queue order included, never "
        "waiting; it is not the learned policy of before. `earliest_finish` knows true sizes and "
        "speeds and waits whenever a busy node finishes a job sooner (same bound). The waiting "
        "margin and spreads (margin 0.1, max spread 1) were chosen on design seeds 100-104 and "
        "committed (bdacfb1) before the report seeds first ran (57683f6). Sampled placement "
        "(sampling up to e x the typical size, within the explore margin), the 30-day maximum "
        "wait, the job's own bound and a caution of 0.5 spread (1 before) replaced the "
        "confident rule and the 24 h maximum after runs on design seeds 100-104 only (4 to 8 "
        "draws each); the report seeds had run with the earlier rules in earlier sessions. "
        "At most 16 busy nodes are examined per decision (3021758; "
        "the Gavel presets have 9 nodes, so it cannot bind there). MdAPE: median absolute "
        "percentage "
        "error of the predicted run time on the chosen device; waited: share of jobs kept "
        "pending at least once.\n"
    ]
    md.append(goals(summary) + draw_goals(noise))
    for name, doc in reports.items():
        c = summary[name]
        md.append(f"## {name} (load {doc['load']})\n\n{presets.get(name).description}.\n")
        md.append(f"{table(doc)}\n")
        md.append(
            f"learned / oracle_greedy = {c['learned_over_oracle']:.3f}; least_allocated is "
            f"{100 * c['gap_least_allocated_over_oracle']:.0f}% above oracle_greedy; "
            f"learned closes {100 * c['gap_closed_vs_least_allocated']:.0f}% of that gap "
            f"and {100 * c['gap_closed_vs_random']:.0f}% of random's; below fastest_device:"
            f" {c['learned_below_fastest_device']}. Per seed, learned / oracle_greedy: "
            f"{', '.join(f'{x:.3f}' for x in c['learned_over_oracle_per_seed'])}. "
            f"Waiting: learned / learned_nowait = {c['learned_over_learned_nowait']:.3f} (per "
            f"seed {', '.join(f'{x:.3f}' for x in c['learned_over_learned_nowait_per_seed'])}); "
            f"earliest_finish / oracle_greedy = {c['earliest_finish_over_oracle']:.3f}; learned "
            "below every baseline but earliest_finish: "
            f"{c['learned_below_every_baseline_but_earliest_finish']}; learned's MdAPE of "
            f"predicted run times: {_pct(c['prediction_mdape'])}%.\n"
        )
    md.append(
        "## Adaptation (stress presets)\n\nPlacement ratio = run time on the chosen device "
        "over run time on the fastest device free at that moment (1.0 = what "
        "oracle_greedy does), mean over 100 decisions. `200-300` is the window 200 to 300 "
        "decisions after the change (back within 10% when at most 1.1); `to within 10%` is "
        "the first 100-decision window after the change at or below 1.1. `stress` was "
        "designed from baseline runs only (seeds 100-104) and committed (609f42d) before "
        "learned first ran on it; `stress-a100` is the first stress preset, kept.\n"
    )
    for name, by_policy in adaptation.items():
        md.append(f"### {name}: {presets.get(name).description}\n")
        md.append(adaptation_table(by_policy))
    (RESULTS / "sim.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()

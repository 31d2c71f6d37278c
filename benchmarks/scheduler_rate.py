"""kube-scheduler's pods per second with megagpu's extender over the stock scheduler and others.

Issue 19's goal: at least 0.8 at 1,000 nodes with kube-scheduler's own client limit lifted
(qps and burst 1,000), so that the comparison is not with a scheduler throttled to 50 writes/s.
Each round starts a kube-scheduler on a dev cluster of its own (kwok fake nodes of 8 devices,
all Ready first) with PODS pending pods; the ways alternate round by round: ``stock``
(kube-scheduler's default profile: what runs without megagpu), ``without`` (the
megagpu-scheduler profile without its extender: no score plugin, so kube-scheduler takes the
first feasible node), ``with`` (megagpu's extender), ``minimal`` and ``minimal-go`` (an extender
that echoes and binds, in Python and in Go: the protocol's own cost). Pods per second are from the
first bind to the last, seen by a watch. Writes benchmarks/results/scheduler-rate.json and .md.
Run: python benchmarks/scheduler_rate.py [--nodes 1000] [--rounds 3] [--pods 1000] [--throttled]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common, extender_load  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--throttled", action="store_true", help="also the default 50/s limit")
    parser.add_argument("--pods", type=int, default=1000, help="pending pods per round")
    args = parser.parse_args()
    limits = ("_qps1000", "") if args.throttled else ("_qps1000",)
    ways = ("stock", "without", "with", "minimal", "minimal-go")
    with tempfile.TemporaryDirectory() as tmp:
        rates = extender_load.scheduling_rate(
            Path(tmp),
            nodes=args.nodes,
            limits=limits,
            rounds=args.rounds,
            pods=args.pods,
            ways=ways,
        )
    result = {**common.header(), "nodes": args.nodes, "pods": args.pods, **rates}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scheduler-rate.json").write_text(json.dumps(result, indent=1))
    lines = [
        "# kube-scheduler pods/s: megagpu's extender over the stock scheduler and others\n\n"
        f"Command: `{result['command']}`; commit {result['commit']}; {result['date']}; "
        f"{result['machine']['cpu']}, {result['machine']['cores']} cores (shared with the "
        f"control plane). {args.nodes} kwok fake nodes of 8 devices, all Ready before the first "
        f"round; {args.pods} pods created pending, then the scheduler started; {args.rounds} "
        "rounds of each way, alternating; pods/s from the first bind to the last. Ways: stock "
        "(kube-scheduler's default profile, no extender: what a cluster without megagpu runs), "
        "first fit (the megagpu-scheduler profile without its extender: with no score plugin "
        "kube-scheduler stops at the first feasible node), minimal (that profile calling an "
        "extender that echoes filter, scores one node and binds: tests/e2e/fake_extender.py, "
        "and the same in Go with client-go: benchmarks/extender_minimal) and megagpu's "
        "extender. Goal: megagpu over stock >= 0.8 with kube-scheduler's client "
        "limit lifted.\n",
        "| kube-scheduler client limit | way | pods/s per round | median | megagpu over it |",
        "|---|---|---|---|---|",
    ]
    labels = {
        "stock": "stock kube-scheduler",
        "without": "first fit (megagpu profile, no extender)",
        "minimal": "minimal extender (Python)",
        "minimal-go": "minimal extender (Go, client-go)",
        "with": "megagpu's extender",
    }
    for suffix in limits:
        limit = "lifted (qps, burst 1,000)" if suffix else "default (50/s, burst 100): throttled"
        for way in ways:
            values = rates[f"{way}{suffix}"]
            ratio = rates.get(f"ratio_with_over_{way}{suffix}")
            lines.append(
                f"| {limit} | {labels[way]} | {' / '.join(f'{v:.1f}' for v in values)} | "
                f"{statistics.median(values):.1f} | {'-' if ratio is None else f'{ratio:.2f}'} |"
            )
    if "server_mean_ms" in rates:
        means = ", ".join(f"{k} {v:.2f} ms" for k, v in rates["server_mean_ms"].items())
        lines.append(f"\nExtender handler time, mean over its last run: {means}.\n")
    (RESULTS / "scheduler-rate.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

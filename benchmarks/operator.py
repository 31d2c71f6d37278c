"""Operator benchmarks. Writes benchmarks/results/operator.json and operator.md.

``python benchmarks/operator.py`` (``make bench-operator``): the operator's API load, in process
(``operator_api``): API calls per completed workload, and bytes written per learning update at
50 and 500 model classes. Goals: at most ``operator_api.CALLS_BOUND`` calls per workload; a
learning update writes less than the Q-state document (it wrote it twice before).

``--cluster``: also the speed rounds (issue 5) on the running dev cluster (``megagpu dev up``):
1,000 GpuWorkloads applied at once, time until each has its pod, operator resident memory.
Goals: at least 30 workloads per second get their pod; operator RSS under 250 MiB. Without
it, the last speed results are kept as they were (with their own command and date).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import client  # noqa: E402

from benchmarks import common, operator_api  # noqa: E402
from megagpu.devcluster import cluster, processes  # noqa: E402
from megagpu.kube import client as kube_client  # noqa: E402

RESULTS = Path(__file__).parent / "results"
COUNT = 1000
ROUNDS = 3


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def body(i: int) -> dict:
    return {
        "apiVersion": "megagpu.io/v1alpha1",
        "kind": "GpuWorkload",
        "metadata": {"name": f"b{i:04d}"},
        "spec": {
            "workloadType": "inference",
            "model": "llama3-8b-q4",
            "gpus": 1,
            "backends": ["cuda", "vulkan", "metal"],
            "template": {
                "metadata": {"annotations": {"megagpu.io/sim-stuck-pending": "true"}},
                "spec": {"containers": [{"name": "w", "image": "busybox"}]},
            },
        },
    }


def one_round(core: client.CoreV1Api, custom: client.CustomObjectsApi, pid: int) -> dict:
    """Apply COUNT workloads in a fresh namespace, wait for every pod, delete them all."""
    namespace = f"bench-operator-{int(time.time())}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    idle, peak, done = rss_mib(pid), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib(pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: custom.create_namespaced_custom_object(
                    "megagpu.io", "v1alpha1", namespace, "gpuworkloads", body(i)
                ),
                range(COUNT),
            )
        )
    applied = time.monotonic() - start
    while True:
        listed = core.list_namespaced_pod(namespace, _preload_content=False)
        pods = len(json.loads(listed.data)["items"])
        if pods >= COUNT or time.monotonic() - start > 900:
            break
        time.sleep(0.5)
    elapsed = time.monotonic() - start
    done.set()
    sampler.join()
    core.delete_namespace(namespace)
    cleaned = time.monotonic()
    while namespace in {n.metadata.name for n in core.list_namespace().items}:
        if time.monotonic() - cleaned > 600:
            break
        time.sleep(1)
    return {
        "apply_seconds": applied,
        "seconds_until_every_pod": elapsed,
        "pods": pods,
        "workloads_per_second": pods / elapsed,
        "seconds_to_delete_them": time.monotonic() - cleaned,
        "operator_rss_mib_before": idle,
        "operator_rss_mib_peak": peak[0],
    }


def speed() -> dict:
    """The speed rounds on the running dev cluster."""
    paths = cluster.paths()
    if cluster.problems(paths):
        raise SystemExit("start the dev cluster first: megagpu dev up")
    api = kube_client.api_client(paths.kubeconfig, pool=16)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    pid = processes.pids(paths.pids)["operator"]
    rounds = [one_round(core, custom, pid) for _ in range(ROUNDS)]
    rates = sorted(r["workloads_per_second"] for r in rounds)
    return {
        **common.header(),
        "workloads": COUNT,
        "rounds": rounds,
        "median_workloads_per_second": rates[len(rates) // 2],
        "max_operator_rss_mib": max(r["operator_rss_mib_peak"] for r in rounds),
        "goals": {"workloads_per_second": 30, "rss_mib": 250},
    }


def speed_md(result: dict) -> str:
    rows = "\n".join(
        f"| {i + 1} | {r['apply_seconds']:.1f} | {r['seconds_until_every_pod']:.1f} | "
        f"{r['workloads_per_second']:.1f} | {r['operator_rss_mib_before']:.0f} | "
        f"{r['operator_rss_mib_peak']:.0f} | {r['seconds_to_delete_them']:.1f} |"
        for i, r in enumerate(result["rounds"])
    )
    return (
        f"## Speed\n\nCommand: `{result['command']}`; commit {result['commit']}; "
        f"{result['date']}; {result['machine']['cpu']}, {result['machine']['cores']} cores; "
        f"the dev cluster with extender, operator and runtime running on the same machine.\n\n"
        f"Each round: {COUNT} GpuWorkloads created by 8 client threads, time until every one "
        f"has its pod, then the namespace deleted (the finalizer removes each pod). One "
        f"operator process through all rounds.\n\n"
        f"| round | apply s | every pod s | workloads/s (goal 30) | RSS before MiB | "
        f"RSS peak MiB (goal 250) | delete s |\n|---|---|---|---|---|---|---|\n{rows}\n\n"
        f"Median {result['median_workloads_per_second']:.1f} workloads per second; operator "
        f"resident memory at most {result['max_operator_rss_mib']:.0f} MiB.\n"
    )


def api_load() -> dict:
    """Calls per completed workload and bytes per learning update (in process)."""
    calls = operator_api.calls_per_workload(workloads=1000, classes=50)
    writes = [operator_api.bytes_per_update(classes) for classes in (50, 500)]
    if calls["calls_per_completed_workload"] > operator_api.CALLS_BOUND:
        raise SystemExit(f"over the bound of API calls per workload: {calls}")
    for w in writes:
        if w["bytes_per_update"] >= w["document_bytes"]:
            raise SystemExit(f"a learning update writes the whole document: {w}")
    return {"api_calls": calls, "learning_writes": writes}


def api_md(result: dict) -> str:
    calls = result["api_calls"]
    rows = "\n".join(f"| {k} | {v} |" for k, v in calls["by_call"].items())
    writes = "\n".join(
        f"| {w['model_classes']} | {w['classes_tracked']} | {w['document_bytes']:,} | "
        f"{w['state_json_bytes']:,} | {w['bytes_per_update']:,} | "
        f"{w['bytes_per_update_before']:,} |"
        for w in result["learning_writes"]
    )
    return (
        f"## API load\n\nCommand: `{result['command']}`; commit {result['commit']}; "
        f"{result['date']}; {result['machine']['cpu']}, {result['machine']['cores']} cores. "
        f"In process: the operator's handler code against a counting in-memory API "
        f"(`benchmarks/operator_api.py`), {calls['workloads']} workloads of "
        f"{calls['model_classes']} model classes driven through create, bound, Running and "
        f"Succeeded, one completion a second, {calls['nodes']} nodes. Events megagpu asks kopf "
        f"to post count as calls; kopf's watches and its own bookkeeping patches (finalizer, "
        f"handler progress) do not.\n\n"
        f"**{calls['calls_per_completed_workload']} API calls per completed workload** (bound "
        f"{calls['bound']}); per workload:\n\n| call | per workload |\n|---|---|\n{rows}\n\n"
        f"Bytes written per learning update once the Q-state is full-grown (3,000 outcomes "
        f"learned, 4,096 learned UIDs), one completion a second (a history snapshot at most "
        f"once a minute); before: the whole document replaced, then copied to a history "
        f"ConfigMap, on every update.\n\n"
        f"| model classes | tracked (cap 50 + other) | document bytes | state.json bytes | "
        f"bytes per update | before |\n|---|---|---|---|---|---|\n{writes}\n"
    )


def main() -> None:
    out = RESULTS / "operator.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    kept = previous.get("speed") or (previous if "rounds" in previous else None)
    result = {**common.header(), **api_load()}
    result["speed"] = speed() if "--cluster" in sys.argv[1:] else kept
    RESULTS.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    md = "# Operator\n\n" + api_md(result)
    if result["speed"]:
        md += "\n" + speed_md(result["speed"])
    (RESULTS / "operator.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

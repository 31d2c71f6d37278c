"""Operator speed (issue 5): apply 1,000 GpuWorkloads at once; time until each has its pod;
operator resident memory. Needs the dev cluster with its components (``megagpu dev up``).

Writes benchmarks/results/operator.json and operator.md. Run: python benchmarks/operator.py
Goals: at least 30 workloads per second get their pod; operator RSS under 250 MiB.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import client  # noqa: E402

from benchmarks import common  # noqa: E402
from megagpu.devcluster import cluster, processes  # noqa: E402
from megagpu.kube import client as kube_client  # noqa: E402

RESULTS = Path(__file__).parent / "results"
COUNT = 1000
NAMESPACE = f"bench-operator-{int(time.time())}"


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


def main() -> None:
    paths = cluster.paths()
    if cluster.problems(paths):
        raise SystemExit("start the dev cluster first: megagpu dev up")
    api = kube_client.api_client(paths.kubeconfig, pool=16)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    pid = processes.pids(paths.pids)["operator"]
    idle = rss_mib(pid)
    start = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: custom.create_namespaced_custom_object(
                    "megagpu.io", "v1alpha1", NAMESPACE, "gpuworkloads", body(i)
                ),
                range(COUNT),
            )
        )
    applied = time.monotonic() - start
    peak = idle
    while True:
        listed = core.list_namespaced_pod(NAMESPACE, _preload_content=False)
        pods = len(json.loads(listed.data)["items"])
        peak = max(peak, rss_mib(pid))
        if pods >= COUNT or time.monotonic() - start > 900:
            break
        time.sleep(0.5)
    elapsed = time.monotonic() - start
    core.delete_namespace(NAMESPACE)
    cleaned = time.monotonic()
    while NAMESPACE in {n.metadata.name for n in core.list_namespace().items}:
        if time.monotonic() - cleaned > 600:
            break
        time.sleep(1)
    cleaned = time.monotonic() - cleaned
    result = {
        **common.header(),
        "workloads": COUNT,
        "apply_seconds": applied,
        "seconds_until_every_pod": elapsed,
        "pods": pods,
        "workloads_per_second": pods / elapsed,
        "seconds_to_delete_them": cleaned,
        "operator_rss_mib_idle": idle,
        "operator_rss_mib_peak": peak,
        "goals": {"workloads_per_second": 30, "rss_mib": 250},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "operator.json").write_text(json.dumps(result, indent=1))
    md = (
        f"# Operator speed\n\nCommand: `{result['command']}`; commit {result['commit']}; "
        f"{result['date']}; {result['machine']['cpu']}, {result['machine']['cores']} cores; "
        f"the dev cluster with extender, operator and runtime running on the same machine.\n\n"
        f"{COUNT} GpuWorkloads created by 8 client threads in {applied:.1f} s; every one had "
        f"its pod after {elapsed:.1f} s: {pods / elapsed:.1f} workloads per second (goal 30). "
        f"Operator resident memory: {idle:.0f} MiB idle, {peak:.0f} MiB at peak (goal 250). "
        f"Deleting them (finalizer removes each pod) took {cleaned:.1f} s.\n"
    )
    (RESULTS / "operator.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

"""The device plugin's Allocate on a real NVIDIA GPU (issue 16).

For each GPU that NVML finds: the answer the plugin gives a pod whose megagpu.io/assigned-devices
names that GPU (the environment, the device nodes that exist, over real gRPC where this machine's
grpcio is new enough for the committed stubs), and whether a process started with that environment
sees exactly that GPU (cupy's device count and the UUID of its device 0). Controls: without the
variables the process sees every GPU; with an unknown UUID it sees none.

Run on a GPU machine: PYTHONPATH=. python3 benchmarks/deviceplugin_gpu.py OUT_DIR
Writes OUT_DIR/deviceplugin-gpu.json and OUT_DIR/deviceplugin-gpu.md; exits 1 when a check fails.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from megagpu.probe import allocation, cuda, node, plugin_devices

CHILD = """
import json, cupy
try:
    n = cupy.cuda.runtime.getDeviceCount()
except cupy.cuda.runtime.CUDARuntimeError as e:  # CUDA reports seeing none as an error
    if "NoDevice" not in str(e):
        raise
    n = 0
uuid = ""
if n:
    raw = cupy.cuda.runtime.getDeviceProperties(0)["uuid"]
    h = bytes(raw).hex() if not isinstance(raw, str) else raw
    uuid = f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
print(json.dumps({"count": n, "uuid": uuid}))
"""
KEEP = ("PATH", "HOME", "LD_LIBRARY_PATH", "PYTHONPATH", "CUDA_HOME")
"""What a container image brings itself; everything else comes from the plugin's answer."""


def child(envs: dict[str, str]) -> dict[str, Any]:
    """cupy's view from a process started with ``envs`` (plus the image's own paths)."""
    env = {k: os.environ[k] for k in KEEP if k in os.environ} | envs
    done = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120
    )
    if done.returncode:
        return {"count": -1, "uuid": "", "error": done.stderr.strip()[-400:]}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def pod(index: int, phase: str = "Pending") -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"gpu{index}",
            "namespace": "bench",
            "uid": f"uid-{index}",
            "annotations": {
                "megagpu.io/assigned-devices": str(index),
                "megagpu.io/assigned-backend": "cuda",
            },
        },
        "spec": {
            "containers": [{"name": "main", "resources": {"limits": {"megagpu.io/gpu": "1"}}}]
        },
        "status": {"phase": phase},
    }


def over_grpc(devices: list[plugin_devices.PluginDevice], index: int) -> dict[str, Any]:
    """The same Allocate through the served plugin (a gRPC client on its unix socket)."""
    try:
        import grpc

        from megagpu.probe import deviceplugin
        from megagpu.probe.kubelet import deviceplugin_pb2 as pb
        from megagpu.probe.kubelet import deviceplugin_pb2_grpc as pb_grpc
    except (ImportError, RuntimeError) as e:
        return {"skipped": f"{type(e).__name__}: {e}"}

    class Pods:
        def kubelet_pods(self) -> list[allocation.KubeletPod]:
            return [allocation.KubeletPod("bench", f"gpu{index}", {"main": ()})]

        def node_pods(self) -> list[dict[str, Any]]:
            return [pod(index)]

    with tempfile.TemporaryDirectory(prefix="dp", dir="/tmp") as directory:
        plugin = deviceplugin.DevicePlugin(directory, "megagpu.io/gpu", Pods())
        plugin.update(devices)
        plugin._serve()  # serving is enough here: no kubelet to register with
        try:
            with grpc.insecure_channel(f"unix://{plugin.socket}") as channel:
                answer = pb_grpc.DevicePluginStub(channel).Allocate(
                    pb.AllocateRequest(
                        container_requests=[
                            pb.ContainerAllocateRequest(devices_ids=[devices[index].id])
                        ]
                    ),
                    timeout=10,
                )
        finally:
            plugin.stop()
    (c,) = answer.container_responses
    return {"envs": dict(c.envs), "devices": [d.host_path for d in c.devices]}


def main(out_dir: Path) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    reading = node.read([cuda.Cuda()])
    devices = plugin_devices.from_reading(reading)
    allocator = allocation.Allocator("megagpu.io/gpu", lambda: devices)
    rows, checks = [], {"NVML finds a GPU": bool(devices)}
    for d in devices:
        others = [pod(i, "Succeeded") for i in range(d.index)]  # earlier pods finished
        got = allocator.allocate(
            [d.id],
            [allocation.KubeletPod("bench", f"gpu{d.index}", {"main": ()})],
            [*others, pod(d.index)],
        )
        h = got.handover
        seen = child(h.envs)
        grpc_answer = over_grpc(devices, d.index)
        rows.append(
            {
                "index": d.index,
                "uuid": d.uuid,
                "envs": h.envs,
                "device_nodes": list(h.paths),
                "cdi": list(h.cdi),
                "child": seen,
                "grpc": grpc_answer,
            }
        )
        name = f"GPU {d.index}"
        checks[f"{name}: CUDA_VISIBLE_DEVICES and NVIDIA_VISIBLE_DEVICES are its UUID"] = (
            h.envs.get("CUDA_VISIBLE_DEVICES") == d.uuid == h.envs.get("NVIDIA_VISIBLE_DEVICES")
        )
        checks[f"{name}: its /dev/nvidia node and /dev/nvidiactl handed over, all exist"] = (
            any(p.startswith("/dev/nvidia") and p[11:].isdigit() for p in h.paths)
            and "/dev/nvidiactl" in h.paths
            and all(os.path.exists(p) for p in h.paths)
        )
        checks[f"{name}: a process with that environment sees exactly it"] = seen == {
            "count": 1,
            "uuid": d.uuid,
        }
        if "skipped" not in grpc_answer:
            checks[f"{name}: the gRPC answer is the same"] = grpc_answer == {
                "envs": h.envs,
                "devices": list(h.paths),
            }
    everything = child({})
    nothing = child({"CUDA_VISIBLE_DEVICES": "GPU-00000000-0000-0000-0000-000000000000"})
    checks["control: without the variables a process sees every GPU"] = everything.get(
        "count"
    ) == len(devices)
    checks["control: with an unknown UUID it sees none"] = nothing.get("count") == 0
    gpu = reading.backend("cuda")
    result = {
        "command": "PYTHONPATH=. python3 benchmarks/deviceplugin_gpu.py OUT",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cards": [x.name for x in gpu.devices] if gpu else [],
        "driver": gpu.driver_version if gpu else "",
        "checks": checks,
        "devices": rows,
        "controls": {"no variables": everything, "unknown uuid": nothing},
    }
    (out_dir / "deviceplugin-gpu.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        "## The device plugin's Allocate on a real GPU (issue 16)",
        "",
        f"Cards: {', '.join(result['cards']) or 'none'}; driver {result['driver']}; "
        f"{result['date']}. Command: `{result['command']}` "
        "(`benchmarks/results/deviceplugin-gpu.json`).",
        "",
        "| check | result |",
        "|---|---|",
        *(f"| {k} | {'pass' if v else 'FAIL'} |" for k, v in checks.items()),
        "",
    ]
    for row in rows:
        lines.append(
            f"GPU {row['index']}: env {row['envs']}, device nodes {row['device_nodes']}; "
            f"the process saw {row['child']}; gRPC: "
            f"{'same answer' if 'skipped' not in row['grpc'] else row['grpc']['skipped']}."
        )
    (out_dir / "deviceplugin-gpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "deviceplugin-gpu")))

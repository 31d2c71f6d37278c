"""``megagpu extender | operator | probe`` and the dev runtime: the long-running components."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from megagpu.cli.errors import UsageError


def _load_policy(path: Path | None, mode: str | None = None) -> Any:
    from megagpu.core import qpolicy, qstate

    if path is None:
        return qpolicy.QPolicy(qpolicy.Params(mode=mode or "active"))
    try:
        policy = qstate.loads(path.read_text())
    except OSError as e:
        raise UsageError(f"cannot read the Q-state {path}: {e.strerror}") from e
    except qstate.StateError as e:
        raise UsageError(f"{path}: {e}") from e
    if mode is not None:
        import dataclasses

        policy.params = dataclasses.replace(policy.params, mode=mode)
    return policy


def cmd_extender(args: argparse.Namespace) -> int:
    """``megagpu extender``: against a cluster, or a snapshot of a cluster spec.

    On uvloop: its event loop takes about a fifth off each request's round trip
    (benchmarks/results/extender.md).
    """
    import logging

    import uvloop

    from megagpu.core import model, waiting
    from megagpu.extender import metrics, server
    from megagpu.io import cluster_spec

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    listen = server.Listen(
        args.host, args.port, args.metrics_port, args.tls_cert, args.tls_key, args.metrics_host
    )
    m = metrics.Metrics()
    try:
        settings = waiting.Settings(max_wait_s=args.max_wait_seconds)
    except model.ValidationError as e:
        raise UsageError(f"--max-wait-seconds: {e}") from e
    if settings.max_wait_s < 0:
        raise UsageError("--max-wait-seconds must be >= 0")
    if args.snapshot:
        nodes = cluster_spec.load(args.snapshot)
        placement = server.snapshot_placement(
            nodes, _load_policy(args.policy_state, args.mode), m, args.seed, settings
        )

        def started() -> None:
            print(
                f"extender (snapshot of {len(nodes)} nodes) on {args.host}:{args.port}, "
                f"metrics on :{args.metrics_port}",
                flush=True,
            )

        uvloop.run(
            server.serve(placement, m, listen, lambda: True, snapshot=True, on_started=started)
        )
        return 0
    from megagpu.extender import cluster

    uvloop.run(
        cluster.run(
            args.kubeconfig,
            args.namespace,
            listen,
            m,
            _load_policy(args.policy_state),
            args.seed,
            settings,
        )
    )
    return 0


def cmd_operator(args: argparse.Namespace) -> int:
    """``megagpu operator``: the lease, then kopf."""
    import asyncio
    import logging

    from megagpu.operator import run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(
        run.run(
            args.kubeconfig,
            args.namespace,
            resource_mode=args.resource_mode,
            queue_by_size=args.queue_by_size,
            liveness=args.liveness,
            metrics_listen=_host_port(args.metrics),
        )
    )
    return 0


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise UsageError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def cmd_runtime(args: argparse.Namespace) -> int:
    """``megagpu dev runtime``: complete simulated pods after their durations."""
    import logging
    import threading

    from megagpu.devcluster import runtime
    from megagpu.kube import client as kube_client

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.time_scale <= 0:
        raise UsageError("--time-scale must be positive")
    sim = runtime.Runtime(kube_client.api_client(args.kubeconfig), args.time_scale)
    runtime.serve_health(sim, args.health_port)
    sim.start()
    threading.Event().wait()
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    """``megagpu probe``: one reading, or metrics and GpuNode publishing in a loop."""
    import os
    import socket
    import time

    from prometheus_client import CollectorRegistry, generate_latest

    from megagpu.probe import (
        collector,
        cpu,
        cuda,
        endpoints,
        health,
        metal,
        node,
        plugin_devices,
        schedule,
        simulated,
        vulkan,
    )

    sources = [cuda.Cuda(), vulkan.Vulkan(), metal.Metal(), cpu.Cpu()]
    hostname = args.node_name or os.environ.get("NODE_NAME")
    if args.recover_after < 0:
        raise UsageError("--recover-after must not be negative")
    if args.benchmark_every <= 0:
        raise UsageError("--benchmark-every must be positive")
    gate = health.HealthGate(args.recover_after)
    runs = {"cuda": cuda.benchmark, "cpu": lambda _: cpu.benchmark()}
    benchmarks = schedule.BenchmarkSchedule(runs, args.benchmark_every)

    sim = _simulated_devices(args)

    def read() -> node.NodeReading:
        reading = node.read(sources, hostname)
        if sim is not None:  # stands in for the backend it is offered under
            fake = sim.reading()
            reading.backends = [b for b in reading.backends if b.name != fake.name] + [fake]
        reading = gate.apply(reading)
        if args.benchmarks:
            for backend in reading.backends:
                benchmarks.apply(backend)
        return reading

    readers = [read]
    if args.simulate:
        from megagpu.io import cluster_spec

        if args.cluster_spec is None:
            raise UsageError("--simulate needs --cluster-spec FILE (the fake nodes)")
        readers = simulated.readers(cluster_spec.load(args.cluster_spec))
    registry = CollectorRegistry()
    registry.register(collector.ProbeCollector(readers[0], dcgm=not args.no_dcgm))
    if args.once:
        if args.format == "json":
            print(
                json.dumps([r().to_json() for r in readers], indent=1)
                if args.simulate
                else json.dumps(read().to_json(), indent=1)
            )
        else:
            print(generate_latest(registry).decode(), end="")
        return 0
    publish, plugin = None, None
    if args.publish or args.simulate or args.device_plugin:
        from kubernetes import client

        from megagpu.kube import client as kube_client
        from megagpu.kube import gpunodes

        api = kube_client.api_client(args.kubeconfig)
        custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        if args.device_plugin:
            if args.simulate:
                raise UsageError("--device-plugin serves one real node; --simulate has none")
            plugin = _device_plugin(args, core, hostname or socket.gethostname())
        # with the device plugin the kubelet advertises megagpu.io/gpu itself
        mode = "vendor" if plugin is not None else args.resource_mode

        def publish(reading: node.NodeReading) -> None:
            gpunodes.publish(custom, reading)
            if not args.simulate:  # fake nodes keep the labels `megagpu dev up` gave them
                gpunodes.publish_node(core, reading.hostname, reading, mode)

    def not_ready() -> str:
        if plugin is None or plugin.ready:
            return ""
        return f"device plugin not registered with the kubelet ({plugin.dir}/kubelet.sock)"

    host, port = _host_port(args.listen)
    endpoints.serve(host, port, registry, not_ready)
    print(f"probe metrics on http://{host}:{port}/metrics, readiness /readyz", flush=True)
    while True:
        for reader in readers:
            try:
                reading = reader()
                if plugin is not None:
                    found = plugin_devices.from_reading(reading, sim_dir=args.sim_dir)
                    plugin.update(plugin_devices.offered(found, args.resource_mode))
                if publish is not None and (args.publish or args.simulate):
                    publish(reading)
            except Exception as e:  # noqa: BLE001 - the API away must not stop the probe
                print(f"probe round failed, retrying next round: {e}", flush=True)
        time.sleep(args.interval)


def _simulated_devices(args: argparse.Namespace) -> Any:
    """``--simulated-devices N``: character devices standing in for GPUs (None without)."""
    if not args.simulated_devices:
        return None
    from megagpu.probe import plugin_devices

    try:
        sim = plugin_devices.SimulatedDevices(
            args.simulated_devices,
            args.simulated_backend,
            args.simulated_class,
            args.simulated_memory_mib,
            args.sim_dir,
        )
        sim.create()
    except (OSError, ValueError) as e:
        raise UsageError(
            f"cannot make {args.simulated_devices} simulated devices in {args.sim_dir}: {e} "
            "(mknod needs root or CAP_MKNOD)"
        ) from e
    return sim


def _device_plugin(args: argparse.Namespace, core: Any, node_name: str) -> Any:
    """The kubelet device plugin for megagpu.io/gpu on this node, started."""
    import logging

    from megagpu.kube import names
    from megagpu.probe import deviceplugin

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    pods = deviceplugin.ClusterPods(args.kubelet_dir, names.RESOURCE_GPU, core, node_name)
    plugin = deviceplugin.DevicePlugin(
        args.device_plugin_dir, names.RESOURCE_GPU, pods, cdi=args.cdi
    )
    plugin.start()
    return plugin

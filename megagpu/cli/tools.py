"""``megagpu policy | explain | tui | uninstall``: tools for people at a terminal."""

from __future__ import annotations

import argparse
from typing import Any

from megagpu.cli.errors import UsageError


def cmd_policy(args: argparse.Namespace) -> int:
    """``megagpu policy show | reset | export | import | rollback``."""
    from kubernetes import client

    from megagpu.kube import client as kube_client
    from megagpu.kube import qstore
    from megagpu.operator import tools

    api = kube_client.api_client(args.kubeconfig)
    store = qstore.Store(client.CoreV1Api(api), args.namespace)
    if args.action == "show":
        print("\n".join(tools.show(store)))
    elif args.action == "reset":
        print(f"reset: version {tools.reset(store)} holds benchmark priors only")
    elif args.action == "export":
        text = tools.export(store)
        if args.output:
            args.output.write_text(text)
            print(f"wrote {args.output}")
        else:
            print(text)
    elif args.action == "import":
        if args.file is None:
            raise UsageError("policy import needs the FILE to import")
        try:
            text = args.file.read_text()
        except OSError as e:
            raise UsageError(f"cannot read {args.file}: {e.strerror}") from e
        print(f"imported as version {tools.import_(store, text)}")
    else:
        print(f"rolled back: version {tools.rollback(store, args.to)} holds the kept values")
    if args.action in ("reset", "import", "rollback"):  # the policy's status shows it now
        from megagpu.operator import publish

        installed = store.load().policy
        if installed is not None:
            publish.Publisher().publish(client.CustomObjectsApi(api), installed)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """``megagpu explain``: why a GpuWorkload went where it went."""
    from kubernetes import client

    from megagpu.kube import client as kube_client
    from megagpu.operator import tools

    api = kube_client.api_client(args.kubeconfig)
    print(
        "\n".join(
            tools.explain(
                client.CustomObjectsApi(api), client.CoreV1Api(api), args.namespace, args.name
            )
        )
    )
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    """``megagpu tui``: the dashboard on a cluster or a simulation."""
    import os

    # Textual waits ESCDELAY ms after Escape for an escape sequence (default 100); keys arrive
    # whole from modern terminals, so 25 ms (curses programs' usual value) keeps Escape quick.
    os.environ.setdefault("ESCDELAY", "25")
    if args.refresh <= 0 or args.speed <= 0:
        raise UsageError("--refresh and --speed must be positive")
    if args.source == "sim":
        from megagpu.devcluster.cluster import DEFAULT_SPEC
        from megagpu.io import cluster_spec, presets
        from megagpu.tui.sim_source import SimSource

        spec = args.cluster_spec or DEFAULT_SPEC
        source: Any = SimSource(
            cluster_spec.load(spec),
            presets.mixed_table(),
            title=f"simulation {spec.name}",
            seed=args.seed,
            speed=args.speed,
        )
    else:
        from megagpu.tui.cluster_source import ClusterSource

        source = ClusterSource.connect(args.kubeconfig, args.namespace)
        source.start()  # the first lists travel while Textual loads (first frame sooner)
    from megagpu.tui.app import MegagpuApp

    MegagpuApp(source, refresh_s=args.refresh).run()
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    """``megagpu uninstall``: clear megagpu finalizers before helm uninstall."""
    from kubernetes import client

    from megagpu.kube import client as kube_client
    from megagpu.kube import finalizers

    custom = client.CustomObjectsApi(kube_client.api_client(args.kubeconfig))
    changed, removed = finalizers.clear(custom)
    print(
        f"removed {removed} megagpu finalizers from {changed} GpuWorkloads; "
        "`helm uninstall RELEASE` can now remove the rest"
    )
    return 0


def cmd_crds(args: argparse.Namespace) -> int:
    """``megagpu crds apply``: server-side apply of the CRDs in ``--dir``."""
    from megagpu.kube import client as kube_client
    from megagpu.kube import crds

    if not args.dir.is_dir():
        raise UsageError(f"{args.dir} is not a directory of CRD YAML files")
    applied = crds.apply(kube_client.api_client(args.kubeconfig), crds.load(args.dir))
    print(f"applied server-side as {crds.FIELD_MANAGER}: {', '.join(applied)}")
    return 0

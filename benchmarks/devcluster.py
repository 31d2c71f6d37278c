"""Dev cluster: cold build time, warm start-to-ready, control-plane resident memory (issue 2).

Writes benchmarks/results/devcluster.json. Run: make bench-devcluster.
The cold build is measured when the binaries are built (recorded in the cache's build.json);
``--cold`` rebuilds from scratch in a temporary cache with empty Go caches to measure it anew.
Goals: warm start-to-ready under 60 s; resident memory under 2 GiB.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common  # noqa: E402
from megagpu.devcluster import binaries  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def rss_mib_under(path: Path) -> tuple[float, list[str]]:
    total, names = 0.0, []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = (proc / "status").read_text()
        except OSError:
            continue
        if str(path) in cmdline:
            rss = next(
                int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
            )
            total += rss / 1024
            names.append(Path(cmdline.split()[0]).name)
    return total, names


def main() -> None:
    cold = "--cold" in sys.argv
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "xdg"
        env = {**os.environ, "XDG_CACHE_HOME": str(home)}
        target = home / "megagpu" / binaries.VERSION_KEY / "bin"
        if cold:
            env.update(GOCACHE=str(Path(tmp) / "gocache"), GOMODCACHE=str(Path(tmp) / "gomod"))
            start = time.monotonic()
            common.dev(env, "build")
            build = {"seconds": round(time.monotonic() - start, 1), "measured": "now (--cold)"}
            RESULTS.mkdir(exist_ok=True)
            (RESULTS / "devcluster-cold-build.json").write_text(
                json.dumps({**common.header(), "cold_build": build}, indent=1)
            )
        else:
            binaries.ensure(print)
            target.mkdir(parents=True)
            for name in binaries.NAMES:
                (target / name).symlink_to(binaries.binary(name))
            build = {**(binaries.last_build() or {}), "measured": "at the last build (build.json)"}
        samples = []
        for _ in range(3):
            start = time.monotonic()
            common.dev(env, "up", "--no-components")  # the control plane alone
            ready = time.monotonic() - start
            time.sleep(10)
            rss, names = rss_mib_under(home)
            samples.append(
                {
                    "start_to_ready_s": round(ready, 2),
                    "rss_mib": round(rss, 1),
                    "processes": sorted(names),
                }
            )
            common.dev(env, "down", check=False)
    result = {
        **common.header(),
        "versions": binaries.VERSION_KEY,
        "cold_build": build,
        "warm_start": samples,
        "warm_start_to_ready_s_max": max(s["start_to_ready_s"] for s in samples),
        "control_plane_rss_mib_max": max(s["rss_mib"] for s in samples),
        "goals": {"warm_start_to_ready_s": 60, "rss_mib": 2048},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "devcluster.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

"""The layer rule (DESIGN 2): pure layers load no third-party module but numpy."""

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import megagpu

ALLOWED_THIRD_PARTY = {"numpy"}


def test_pure_layers_load_only_numpy_beyond_the_stdlib():
    code = (
        "import sys, json, pkgutil, importlib, megagpu.core, megagpu.sim\n"
        "for pkg in (megagpu.core, megagpu.sim):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    third_party = {n for n in loaded - set(sys.stdlib_module_names) if not n.startswith("_")}
    third_party -= {"megagpu"}
    assert third_party <= ALLOWED_THIRD_PARTY, third_party
    for banned in ("asyncio", "logging", "subprocess", "socket"):
        assert banned not in loaded


def test_workload_imports_cupy_and_vulkan_only_when_it_runs():
    code = (
        "import sys, megagpu.cli.workload, megagpu.workload.run\n"
        "print(sorted(m for m in ('cupy', 'vulkan', 'cffi') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_import_operator_is_still_the_stdlib():
    for m in pkgutil.walk_packages(megagpu.__path__, "megagpu."):
        if m.name != "megagpu.__main__":
            importlib.import_module(m.name)
    import operator

    assert operator.__file__ is not None and "megagpu" not in operator.__file__
    assert operator.add(2, 3) == 5


def test_import_linter_contracts_hold():
    tool = Path(sys.executable).parent / "lint-imports"
    out = subprocess.run([str(tool)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Contracts: 2 kept, 0 broken." in out.stdout

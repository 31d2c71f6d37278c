import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KUBELET = ROOT / "megagpu" / "probe" / "kubelet"
PROTOS = {
    # sha256 of api.proto in k8s.io/kubelet v0.36.3 (deviceplugin/v1beta1, podresources/v1)
    "deviceplugin.proto": "b780bfeac99c93c231dc165ce417f4da88481eececa0c65eeb90f5f2e9b5b65b",
    "podresources.proto": "f65bc77eb41334effc87fdd8c234bdcdbf01a64122010dca50a6fecfaed9390c",
}


@pytest.mark.parametrize("name", sorted(PROTOS))
def test_the_protos_are_the_kubelet_releases_unchanged(name):
    assert hashlib.sha256((KUBELET / name).read_bytes()).hexdigest() == PROTOS[name]


def test_the_committed_stubs_are_what_protoc_generates(tmp_path):
    pytest.importorskip("grpc_tools")
    for name in PROTOS:
        target = tmp_path / "megagpu" / "probe" / "kubelet"
        target.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes((KUBELET / name).read_bytes())
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            ".",
            "--python_out=.",
            "--grpc_python_out=.",
            *(f"megagpu/probe/kubelet/{name}" for name in PROTOS),
        ],
        cwd=tmp_path,
        check=True,
    )
    generated = sorted(p.name for p in (tmp_path / "megagpu/probe/kubelet").glob("*_pb2*.py"))
    assert generated == sorted(p.name for p in KUBELET.glob("*_pb2*.py"))
    for name in generated:
        fresh = (tmp_path / "megagpu/probe/kubelet" / name).read_text()
        assert (KUBELET / name).read_text() == fresh, f"{name} is stale: regenerate it"

import shutil
from collections import namedtuple

import pytest

from megagpu.devcluster import binaries
from megagpu.devcluster.errors import DevClusterError

Usage = namedtuple("Usage", "total used free")


def test_cache_path_is_version_keyed(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert binaries.bin_dir() == tmp_path / "megagpu" / binaries.VERSION_KEY / "bin"
    assert "1.36.3" in binaries.VERSION_KEY and "0.8.0" in binaries.VERSION_KEY


def test_disk_too_full_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda _: "/usr/bin/go")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: Usage(10 * 2**30, 10 * 2**30, 2**29))
    with pytest.raises(DevClusterError, match=r"only 0\.5 GiB free .* needs about 6 GiB"):
        binaries.ensure(print)
    assert not list((tmp_path / "megagpu").rglob("kube-apiserver"))

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from megagpu.cli import main
from megagpu.devcluster import binaries, buildah, buildsteps, debian_base, docker_archive, images
from megagpu.devcluster.errors import DevClusterError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tools(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")


def test_base_key_follows_suite_packages_and_sources():
    recipe = debian_base.Recipe()
    assert recipe.key().startswith("debian-bookworm-")
    assert recipe.key() == debian_base.Recipe(packages=tuple(reversed(recipe.packages))).key()
    assert recipe.key() != recipe._replace(packages=(*recipe.packages, "curl")).key()
    assert recipe.key() != recipe._replace(sources=recipe.sources[:1]).key()
    assert recipe._replace(suite="trixie").key().startswith("debian-trixie-")
    assert recipe.ref() == f"localhost/megagpu-base:{recipe.key()}"


def test_mmdebstrap_command_line(tools):
    argv = debian_base.Recipe().mmdebstrap_argv(Path("/c/base.partial"))
    assert argv[:3] == ["/usr/bin/mmdebstrap", "--variant=minbase", "--format=tar"]
    included = next(a for a in argv if a.startswith("--include=")).split("=", 1)[1].split(",")
    assert {"python3", "python3-venv", "ca-certificates", "libvulkan1"} <= set(included)
    position = argv.index("bookworm")
    assert argv[position + 1] == "/c/base.partial"
    assert argv[position + 2 :] == list(debian_base.SOURCES)
    assert "--dpkgopt=path-include=/usr/share/doc/*/copyright" in argv


def test_bud_builds_the_dockerfile_on_the_base_with_the_host_ca_bundle(tmp_path):
    b = buildah.Buildah("/usr/bin/buildah", tmp_path / "root", tmp_path / "run", "vfs")
    argv = buildah.bud_argv(b, ROOT, "localhost/megagpu:dev", {"PYTHON_IMAGE": "x:y"}, Path("/i"))
    storage = ["--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run")]
    assert argv[:8] == ["/usr/bin/buildah", *storage, "--storage-driver", "vfs", "bud"]
    assert argv[argv.index("--isolation") + 1] == "chroot"
    assert argv[argv.index("--build-arg") + 1] == "PYTHON_IMAGE=x:y"
    assert {"--layers", "--force-rm", "--pull=never"} <= set(argv)
    assert argv[argv.index("--file") + 1] == str(ROOT / "Dockerfile")
    assert argv[argv.index("--tag") + 1] == "localhost/megagpu:dev"
    assert argv[-1] == str(ROOT)
    if buildah.CA_BUNDLE.exists():
        bundle = str(buildah.CA_BUNDLE)
        assert argv[argv.index("--volume") + 1] == f"{bundle}:{bundle}:ro"
    push = buildah.push_argv(b, "sha256:ab", Path("/a.tar"), "localhost/megagpu:dev")
    assert push[-2:] == ["sha256:ab", "docker-archive:/a.tar:localhost/megagpu:dev"]


def test_storage_falls_back_to_vfs_and_remembers(monkeypatch, tmp_path, tools):
    calls = []

    def run(argv, **_):
        calls.append(argv)
        driver = argv[argv.index("--storage-driver") + 1]
        failed = driver == "overlay"
        return subprocess.CompletedProcess(argv, int(failed), "", "overlay: not supported\n")

    monkeypatch.setattr(subprocess, "run", run)
    assert buildah.storage(tmp_path / "storage").driver == "vfs"
    assert (tmp_path / "storage.driver").read_text() == "vfs"
    assert len(calls) == 2
    assert buildah.storage(tmp_path / "storage").driver == "vfs"
    assert len(calls) == 2


def test_a_missing_tool_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda _: None)
    with pytest.raises(DevClusterError, match=r"mmdebstrap is not installed.*make host-packages"):
        debian_base.Recipe().mmdebstrap_argv(Path("/x"))


APT_FAILURE = [
    "Err:1 http://deb.debian.org/debian bookworm InRelease",
    "  Temporary failure resolving 'deb.debian.org'",
    "E: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Temporary "
    "failure resolving 'deb.debian.org'",
    "E: mmdebstrap failed to run",
]
PIP_FAILURE = [
    "WARNING: Retrying (Retry(total=0)) after connection broken by 'NewConnectionError(': "
    "Failed to establish a new connection: [Errno -3] Temporary failure in name resolution')'",
    "ERROR: Could not find a version that satisfies the requirement setuptools>=68 (from "
    "versions: none)",
    "ERROR: No matching distribution found for setuptools>=68",
]


def test_diagnosis_names_the_unreachable_mirror_or_index():
    apt = buildsteps.diagnose("the Debian base", 1, APT_FAILURE, Path("/l"))
    assert apt.startswith("the Debian base: the Debian package mirror (deb.debian.org) cannot")
    assert "E: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease" in apt
    assert "run `make image` again" in apt
    pip = buildsteps.diagnose("the image build", 1, PIP_FAILURE, Path("/l"))
    assert "the Python package index (pypi.org) cannot be reached" in pip
    assert "Failed to establish a new connection" in pip
    other = buildsteps.diagnose("saving the image", 125, ["", "Error: no space left"], Path("/l"))
    assert other == (
        "saving the image failed (exit 125): Error: no space left; the whole output is in /l"
    )
    long = buildsteps.diagnose("x", 1, ["E: Failed to fetch " + "a" * 500], Path("/l"))
    assert len(long) < 500 and "a..." in long


def test_an_unreachable_mirror_is_one_line_and_no_traceback(monkeypatch, tmp_path, capsys):
    fake = tmp_path / "bin" / "mmdebstrap"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\nprintf 'I: running apt-get update...\\n%s\\n' \"$ERR\" >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("ERR", APT_FAILURE[2])
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["dev", "image", "--no-load"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the Debian base (mmdebstrap): the Debian package mirror")
    assert err.count("\n") == 1 and "Traceback" not in err
    images_dir = tmp_path / "cache" / "megagpu" / "images"
    assert not list(images_dir.glob("*.partial")) and not list(images_dir.glob("*.tar"))
    assert "Temporary failure resolving" in (images_dir / "logs" / "mmdebstrap.log").read_text()


def test_archive_round_trip(tmp_path):
    program = tmp_path / "pause"
    program.write_bytes(b"\x7fELF pretend")
    archive = tmp_path / "out" / "pause.tar"
    settings = {"Entrypoint": ["/pause"], "User": "65535:65535"}
    image_id = docker_archive.write(
        archive, "registry.k8s.io/pause:9", [docker_archive.File("/pause", program)], settings, "t"
    )
    contents = docker_archive.read(archive)
    assert contents.repo_tags == ["registry.k8s.io/pause:9"]
    assert contents.config_digest == image_id
    assert contents.config["config"] == settings
    assert contents.config["os"] == "linux" and contents.layers == 1
    with tarfile.open(archive) as tar:
        config_bytes = tar.extractfile(image_id.removeprefix("sha256:") + ".json").read()
        assert hashlib.sha256(config_bytes).hexdigest() == image_id.removeprefix("sha256:")
        (layer_name,) = json.load(tar.extractfile("manifest.json"))[0]["Layers"]
        layer_bytes = tar.extractfile(layer_name).read()
    diff_id = contents.config["rootfs"]["diff_ids"][0]
    assert diff_id == "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    (tmp_path / "layer.tar").write_bytes(layer_bytes)
    with tarfile.open(tmp_path / "layer.tar") as layer:
        member = layer.getmember("pause")
        assert member.mode == 0o755 and member.uid == 0
        assert layer.extractfile(member).read() == b"\x7fELF pretend"
    again = docker_archive.write(
        tmp_path / "again.tar",
        "registry.k8s.io/pause:9",
        [docker_archive.File("/pause", program)],
        settings,
        "t",
    )
    assert again == image_id, "the same inputs give the same image"


def test_scheduler_image_is_named_as_the_chart_pulls_it():
    values = yaml.safe_load((ROOT / "charts/megagpu/values.yaml").read_text())
    image = values["scheduler"]["image"]
    assert f"{image['repository']}:{image['tag']}" == images.SCHEDULER_REF
    assert images.SCHEDULER_REF == f"registry.k8s.io/kube-scheduler:v{binaries.K8S_VERSION}"


def test_scheduler_image_from_the_built_binary(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(DevClusterError, match=r"kube-scheduler is not built.*make binaries"):
        images.build_scheduler(print)
    binary = binaries.binary("kube-scheduler")
    binary.parent.mkdir(parents=True)
    binary.write_bytes(b"scheduler")
    archive = images.build_scheduler(print)
    contents = docker_archive.read(archive.path)
    assert contents.repo_tags == [images.SCHEDULER_REF]
    assert contents.config["config"]["Entrypoint"] == ["/usr/local/bin/kube-scheduler"]
    written = archive.path.stat().st_mtime_ns
    images.build_scheduler(print)
    assert archive.path.stat().st_mtime_ns == written, "reused while the binary is unchanged"


def test_pause_version_is_read_from_the_module_makefile(tmp_path):
    source = tmp_path / "build" / "pause" / "linux" / "pause.c"
    source.parent.mkdir(parents=True)
    (tmp_path / "build" / "pause" / "Makefile").write_text("IMAGE = x\nTAG ?= 3.10.2\n")
    assert images.pause_version(source) == "3.10.2"


def test_load_command_line_and_failure(tmp_path):
    ctr, socket = Path("/bin/ctr"), Path("/run/node-1/containerd.sock")
    assert images.load_argv(ctr, socket, Path("/a.tar")) == [
        "/bin/ctr",
        "--address",
        "/run/node-1/containerd.sock",
        "-n",
        "k8s.io",
        "images",
        "import",
        "/a.tar",
    ]
    failing = tmp_path / "ctr"
    failing.write_text("#!/bin/sh\necho 'ctr: failed to dial: connection refused' >&2\nexit 1\n")
    failing.chmod(0o755)
    archive = images.Archive("localhost/megagpu:dev", tmp_path / "a.tar")
    with pytest.raises(DevClusterError, match=r"node-1/containerd.sock did not take .*refused"):
        images.load(failing, socket, archive)


def test_prune_keeps_named_new_and_reused_images(monkeypatch, tmp_path):
    reused, new, stale, named = "a" * 64, "b" * 64, "c" * 64, "d" * 64
    log = f"[1/2] STEP 2/8: RUN x\n--> Using cache {reused}\n[1/2] STEP 3/8: COPY y\n"
    assert buildah.cache_hits(log) == {reused}
    listing = [
        {"id": f"sha256:{reused}", "names": None, "created": 100},
        {"id": f"sha256:{new}", "names": None, "created": 200},
        {"id": f"sha256:{stale}", "names": None, "created": 100},
        {"id": f"sha256:{named}", "names": ["localhost/megagpu-base:k"], "created": 50},
    ]
    removed = []

    def run(argv, **_):
        if "rmi" in argv:
            removed.extend(argv[argv.index("rmi") + 1 :])
        return subprocess.CompletedProcess(argv, 0, json.dumps(listing), "")

    monkeypatch.setattr(subprocess, "run", run)
    b = buildah.Buildah("buildah", tmp_path, tmp_path, "overlay")
    assert buildah.prune(b, 150.5, buildah.cache_hits(log)) == 1
    assert removed == [stale]


def test_new_nodes_get_the_project_image_only_once_built(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    made = [images.Archive(images.PAUSE_REF, tmp_path / "p"), images.Archive("s", tmp_path / "s")]
    monkeypatch.setattr(images, "build_pause", lambda out: made[0])
    monkeypatch.setattr(images, "build_scheduler", lambda out: made[1])
    assert images.for_new_nodes(print) == made
    images.project_archive().path.parent.mkdir(parents=True)
    images.project_archive().path.write_bytes(b"")
    assert images.for_new_nodes(print) == [*made, images.project_archive()]

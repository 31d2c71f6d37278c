"""SPIR-V for the Vulkan backend: GLSL compute shaders compiled with glslangValidator.

The GLSL sources in ``shaders/`` are compiled when the project is built (``setup.py``'s
build step, or ``make shaders`` for a source checkout) into ``spirv/``, which is never committed.
Stdlib only: ``setup.py`` loads this file by path, before megagpu is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "shaders"
"""GLSL sources (``<name>.comp``)."""
BUILT = HERE / "spirv"
"""Where the build puts ``<name>.spv``."""
COMPILER = "glslangValidator"
HINT = "install glslang-tools (glslangValidator), then build: make shaders, or pip install ."


class ShaderError(RuntimeError):
    """A shader is missing or did not compile; the message says which and why."""


def compile_all(out_dir: Path = BUILT, src_dir: Path = SOURCES) -> list[Path]:
    """Compile every ``*.comp`` of ``src_dir`` into ``out_dir``; the paths written."""
    tool = shutil.which(COMPILER)
    if tool is None:
        raise ShaderError(f"{COMPILER} is not on PATH: {HINT}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sorted(src_dir.glob("*.comp")):
        target = out_dir / f"{source.stem}.spv"
        done = subprocess.run(
            [tool, "-V", "--target-env", "vulkan1.1", str(source), "-o", str(target)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            target.unlink(missing_ok=True)
            raise ShaderError(f"{source.name} did not compile: {done.stdout.strip()}")
        written.append(target)
    return written


def load(name: str) -> bytes:
    """SPIR-V of shader ``name`` from ``$MEGAGPU_SPIRV_DIR`` or the built ``spirv/``."""
    path = Path(os.environ.get("MEGAGPU_SPIRV_DIR") or BUILT) / f"{name}.spv"
    try:
        code = path.read_bytes()
    except OSError as e:
        raise ShaderError(f"shader {name} is not built ({path}: {e.strerror}): {HINT}") from e
    if len(code) < 20 or len(code) % 4 or code[:4] != b"\x03\x02\x23\x07":
        raise ShaderError(f"{path} is not SPIR-V: {HINT}")
    return code


if __name__ == "__main__":
    for written in compile_all():
        print(written)

"""Build step beyond pyproject.toml: the Vulkan workload's SPIR-V, compiled from its GLSL.

``glslangValidator`` (Debian: glslang-tools) must be on PATH when the project is built; without
it the build stops with a hint (the Vulkan workload cannot run without its shaders).
"""

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildWithShaders(build_py):
    """build_py, then compile ``megagpu/workload/shaders/*.comp`` into the built package."""

    def run(self) -> None:
        """Build the Python package, then its SPIR-V."""
        super().run()
        path = HERE / "megagpu" / "workload" / "shaders.py"
        if not path.exists():  # a stub package (the Dockerfile's dependency layer)
            return
        spec = importlib.util.spec_from_file_location("megagpu_shaders", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out = Path(self.build_lib) / "megagpu" / "workload" / "spirv"
        module.compile_all(out)


setup(cmdclass={"build_py": BuildWithShaders})

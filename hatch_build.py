"""Build-time steps of every wheel and editable install.

1. Generate the wire modules (bigfleet/v1alpha1/*_pb2*.py) from proto/, so a
   fresh `pip install -e .` has importable protobuf and gRPC modules. The
   generated files are never edited or committed; `python hatch_build.py`
   regenerates them by hand.
2. Compile the decision engine's hot modules to C extensions with mypyc
   (ADR 0023). An editable install puts them next to their sources; a wheel
   carries them and the sources both. The engine falls back to its Python
   source when they are missing or older than the sources
   (bigfleet.shard.engine.build), so a machine without a C compiler still
   installs, with a warning. BIGFLEET_COMPILE_ENGINE=0 skips the step.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PROTO_ROOT = "proto"
PACKAGE_DIR = Path("bigfleet") / "v1alpha1"


def generate(root: Path) -> list[Path]:
    """Compile every .proto under proto/bigfleet/v1alpha1 into bigfleet/v1alpha1."""
    from grpc_tools import protoc  # build-time only dependency

    sources = sorted((root / PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    if not sources:
        raise RuntimeError(f"no .proto files under {root / PROTO_ROOT / PACKAGE_DIR}")
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{root / PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={root}",
        f"--pyi_out={root}",
        f"--grpc_python_out={root}",
        *(str(s) for s in sources),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed; see the messages above")
    return sorted((root / PACKAGE_DIR).glob("*_pb2*.py*"))


# The engine's hot modules, compiled; the rest (settings and machine validation that
# checks types at run time, the verdict book, the cycle's composition that tests wrap)
# stay Python. Paths under bigfleet/ so mypyc names them bigfleet.shard.engine.*.
ENGINE_DIR = Path("bigfleet") / "shard" / "engine"
COMPILED = (
    "decision/actions",
    "decision/colocation",
    "decision/cost",
    "decision/phase1",
    "decision/phase2",
    "decision/phase3",
    "decision/replay",
    "inventory",
    "needs",
    "normalize",
    "parking",
    "profile",
    "resources",
)
MANIFEST = "compiled.json"  # module -> source digest, read by bigfleet.shard.engine.build
# Names the compiled modules' shared runtime library: a module of the engine package (its
# last part gets a suffix), so an installed wheel puts nothing beside `bigfleet`.
RUNTIME_GROUP = "bigfleet.shard.engine.native"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compile_engine(root: Path, out: Path) -> list[Path]:
    """Compile the hot engine modules into `out` (laid out as from the root: the
    extensions and their runtime library under bigfleet/shard/engine/) and
    write the manifest there; returns every file made, relative to `out`."""
    from mypyc.build import mypycify  # build-time only dependencies
    from setuptools import Distribution  # type: ignore[import-untyped]

    sources = [(ENGINE_DIR / f"{m}.py").as_posix() for m in COMPILED]
    here = os.getcwd()
    os.chdir(root)  # mypyc names modules after their paths from the working directory
    try:
        extensions = mypycify(
            # The project's own mypy settings load a plugin of a runtime dependency,
            # absent from the build environment; the engine needs none of them.
            [f"--config-file={os.devnull}", f"--cache-dir={out / 'mypy'}", *sources],
            opt_level="3",
            group_name=RUNTIME_GROUP,
            target_dir=str(out / "c"),
        )
        dist = Distribution({"name": "bigfleet-engine", "ext_modules": extensions})
        build = dist.get_command_obj("build_ext")
        build.build_lib = str(out / "lib")
        build.build_temp = str(out / "temp")
        build.parallel = os.cpu_count() or 1
        dist.run_command("build_ext")
    finally:
        os.chdir(here)
    lib = out / "lib"
    manifest = {
        "modules": {
            ".".join((ENGINE_DIR / m).parts): digest(root / ENGINE_DIR / f"{m}.py")
            for m in COMPILED
        }
    }
    (lib / ENGINE_DIR / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return sorted(p.relative_to(lib) for p in lib.rglob("*") if p.is_file())


def _place(lib: Path, made: list[Path], root: Path) -> None:
    """Move built files into the source tree. Each lands by rename, so a process that
    has an older extension loaded keeps its (unlinked) file intact."""
    for rel in made:
        target = root / rel
        staged = target.with_name(f".{target.name}.new")
        shutil.copyfile(lib / rel, staged)
        os.replace(staged, target)


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        generate(root)
        if os.environ.get("BIGFLEET_COMPILE_ENGINE", "1") == "0":
            return
        out = Path(tempfile.mkdtemp(prefix="bigfleet-engine-"))
        try:
            made = compile_engine(root, out)
        except Exception as err:  # no compiler, no mypyc: the Python engine still works
            warnings.warn(
                f"the decision engine was not compiled ({err}); it will run as Python",
                stacklevel=1,
            )
            shutil.rmtree(out, ignore_errors=True)
            return
        lib = out / "lib"
        if version == "editable":
            _place(lib, made, root)
            shutil.rmtree(out, ignore_errors=True)
            return
        # A wheel: the files go in from the build folder, which hatchling reads after
        # this hook returns (it is left for the system's temporary-file cleanup).
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        for rel in made:
            build_data["force_include"][str(lib / rel)] = rel.as_posix()


if __name__ == "__main__":
    for path in generate(Path(__file__).resolve().parent):
        print(path, file=sys.stderr)

"""Generate the wire modules (bigfleet/v1alpha1/*_pb2*.py) from proto/ at build time.

Runs for wheels and editable installs alike, so a fresh `pip install -e .` has
importable protobuf and gRPC modules. The generated files are never edited or
committed; `python hatch_build.py` regenerates them by hand.
"""

from __future__ import annotations

import sys
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


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        generate(Path(self.root))


if __name__ == "__main__":
    for path in generate(Path(__file__).resolve().parent):
        print(path, file=sys.stderr)

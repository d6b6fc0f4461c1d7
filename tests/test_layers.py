"""Imports flow one way (docs/architecture.md): experiments -> pipeline -> sampler / crystal /
predictor / data -> the ground floor (kernels, neighbors, structures, modeldir, training,
chunkstore, guidance, sharding, typing). Read from the source with `ast`, so a lazy import inside
a function counts too."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GROUND = {"typing", "structures", "modeldir", "training", "chunkstore", "guidance", "sharding"}
GROUND |= {"kernels", "neighbors"}
STAGES = {"sampler", "crystal"}
# What each top-level part of jaxdos may import (besides itself).
ALLOWED = {
    **{g: GROUND for g in GROUND},
    "data": GROUND,
    "sampler": GROUND | {"data"},
    "crystal": GROUND | {"data"},
    # The DOS predictor sits beside the stages: it reads records, never either stage.
    "predictor": GROUND | {"data"},
    "pipeline": GROUND | STAGES | {"data", "predictor"},
    "__init__": GROUND | STAGES | {"data", "predictor", "pipeline"},
}


def _part(path: Path) -> str:
    rel = path.relative_to(ROOT / "jaxdos")
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


MODULES = sorted((ROOT / "jaxdos").rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_flow_one_way(path):
    part = _part(path)
    for name in _imports(path):
        top, _, rest = name.partition(".")
        assert top != "experiments", f"{path}: jaxdos imports the commands ({name})"
        if top != "jaxdos" or not rest:
            continue
        target = rest.split(".")[0]
        if target == part:
            continue
        assert target in ALLOWED[part], f"{path}: the {part} layer may not import jaxdos.{target}"


def test_ground_floor_crystal_layer_imports_only_typing():
    names = [n for n in _imports(ROOT / "jaxdos" / "structures.py") if n.startswith("jaxdos")]
    assert set(names) <= {"jaxdos.typing"}

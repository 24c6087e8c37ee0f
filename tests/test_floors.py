"""The floor plan (docs/architecture.md) is written in pyproject.toml and kept.

`make lint` runs `lint-imports`; these tests make sure the contract it checks covers the whole
house, so that a new module cannot slip in without a floor, and run it once more from pytest.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lab", "instruments")


def _contract() -> dict[str, object]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    (floors,) = [contract for contract in contracts if contract["id"] == "floors"]
    return dict(floors)


def _floors() -> list[set[str]]:
    layers = _contract()["layers"]
    assert isinstance(layers, list)
    return [
        {name.strip().strip("()") for name in re.split(r"[:|]", layer)}
        for layer in layers
        if isinstance(layer, str)
    ]


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _floor_of(module: str, floors: list[set[str]]) -> int | None:
    for number, names in enumerate(floors):
        if any(module == name or module.startswith(name + ".") for name in names):
            return number
    return None


def _imports_of_the_house(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return [name for name in names if name.split(".")[0] in PACKAGES]


def test_the_floors_are_a_layers_contract() -> None:
    contract = _contract()
    assert contract["type"] == "layers"
    assert not contract.get("ignore_imports"), "the floors have no exceptions"
    floors = _floors()
    assert {"lab.main", "lab.cli", "lab.serve"} <= floors[0], "the composition root is on top"
    assert "lab.tables" in floors[-2] and "lab.audit" in floors[-2]


def test_every_module_has_a_floor() -> None:
    """A module is on a floor, or is a package whose modules are spread over floors and which
    therefore imports nothing of the house itself (its `__init__` would be on no floor)."""
    floors = _floors()
    homeless = []
    for module, path in _modules().items():
        if _floor_of(module, floors) is not None:
            continue
        if path.name == "__init__.py" and not _imports_of_the_house(path):
            continue
        homeless.append(module)
    assert not homeless, (
        f"give these modules a floor in pyproject.toml [tool.importlinter]: {homeless}"
    )


def test_the_contract_is_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    if not lint_imports.exists():
        pytest.skip("import-linter is not installed in this environment")
    done = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

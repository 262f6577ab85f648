"""The package's layers: every import goes down (or sideways within a layer), and no cycle.

Layers, bottom to top (docs/architecture.md):
  nica.util     files, claims, warnings, progress display, provenance
  nica.core     relative gradient, gradient modes, network, activations, priors, model, metrics
  nica.fitting  data checks, auxiliary variable, configuration, trainer, estimator
  nica          the facade (nica/__init__.py): re-exports of core and fitting
  nica.sklearn  NonlinearICA, nica.fit as a scikit-learn estimator (needs scikit-learn)
  nica.methods  the method registry: nica's two models and the baselines
  synthetic     data generators and mixing networks
  nica.apps     experiment runner, density estimation, plots, the command line
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = (
    "nica.util",
    "nica.core",
    "nica.fitting",
    "nica",
    "nica.sklearn",
    "nica.methods",
    "synthetic",
    "nica.apps",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    paths = [*ROOT.joinpath("nica").rglob("*.py"), *ROOT.joinpath("synthetic").rglob("*.py")]
    return {_module_name(p): p for p in sorted(paths)}


def _layer(module: str) -> int:
    """Rank of ``module``'s layer: the longest layer name it falls under."""
    if module == "nica":
        return LAYERS.index("nica")
    best = max(
        (name for name in LAYERS if name != "nica" and (module + ".").startswith(name + ".")),
        key=len,
        default=None,
    )
    if best is None:
        raise AssertionError(f"{module} is in no layer of {LAYERS}; add it to one")
    return LAYERS.index(best)


def _imports(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports (at any depth of the file: local imports count;
    ``if TYPE_CHECKING:`` blocks do not, they are never executed)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for statement in node.body
        for inner in ast.walk(statement)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


MODULES = _modules()
GRAPH = {name: _imports(path, set(MODULES)) - {name} for name, path in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down(module):
    upward = sorted(dep for dep in GRAPH[module] if _layer(dep) > _layer(module))
    assert not upward, f"{module} ({LAYERS[_layer(module)]}) imports a higher layer: {upward}"


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(GRAPH[name]):
            # a package's __init__ importing its own submodules is how re-exports work
            if dep.startswith(name + "."):
                continue
            if state.get(dep) == 1:
                cycle = path[path.index(dep) :] + [dep] if dep in path else [name, dep]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if dep not in state:
                visit(dep, [*path, dep])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])


def test_every_layer_has_modules():
    """The test checks real folders: a renamed layer must be renamed here too."""
    ranks = {_layer(name) for name in MODULES}
    assert ranks == set(range(len(LAYERS)))

"""The package's layers import only downwards, and no modules import each other (read from the source, with ast).

Layers, lowest first: `umbert_hf.utils`; the flat model files (`umbert_hf/*.py`, which travel with a saved model's
remote code); `umbert_hf.data`; `umbert_hf.evaluation`; `umbert_hf.training`; `umbert_hf.commands`; `umbert_hf.apps`.
`dataset_builder` sits beside `data`: it may use `utils` and the model files, never training, commands or apps.
Imports inside functions count too: a lazy import is still a dependency. One is sanctioned (`LAZY_GATEWAYS`): a
saved model's remote code embeds a user's photo through the installed package, imported on first use inside a `try`
(transformers then does not require the package to load the folder's code).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("umbert_hf", "dataset_builder")
LAYERS = {
    "umbert_hf.utils": 0,
    "umbert_hf": 1,  # the flat model files
    "umbert_hf.data": 2,
    "dataset_builder": 2,
    "umbert_hf.evaluation": 3,
    "umbert_hf.training": 4,
    "umbert_hf.commands": 5,
    "umbert_hf.apps": 6,
}


# module -> the higher module it may import lazily, and only there.
LAZY_GATEWAYS = {"umbert_hf.catalogue": {"umbert_hf.data", "umbert_hf.data.model_image_encoder"}}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "evaluate_metrics" not in path.parts  # the `evaluate` loading-script folder is standalone
    }


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules `name` imports (absolute or relative, at any depth of the file)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target.split(".")[0] in PACKAGES:
                found.add(target)
    return found


def layer(name: str) -> int:
    best = max((prefix for prefix in LAYERS if name == prefix or name.startswith(prefix + ".")), key=len)
    return LAYERS[best]


GRAPH = {name: imports_of(name, path, set(modules())) for name, path in modules().items()}


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_a_module_imports_no_higher_layer(name):
    if name in PACKAGES:  # a package's __init__ gathers its public names
        return
    allowed = LAZY_GATEWAYS.get(name, set())
    upward = sorted(
        target
        for target in GRAPH[name]
        if target not in PACKAGES and layer(target) > layer(name) and target not in allowed
    )
    assert not upward, f"{name} (layer {layer(name)}) imports {upward}"


def test_no_modules_import_each_other():
    """No cycle at all, of any length (package `__init__` files aside, which import their own modules)."""
    graph = {name: {t for t in targets if t not in PACKAGES} for name, targets in GRAPH.items() if name not in PACKAGES}
    for package in (
        "umbert_hf.data",
        "umbert_hf.evaluation",
        "umbert_hf.training",
        "umbert_hf.apps",
        "umbert_hf.utils",
    ):
        graph.pop(package, None)
        for targets in graph.values():
            targets.discard(package)
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_the_graph_is_read():
    """The checks above see real imports (so they cannot pass on an empty graph)."""
    assert "umbert_hf.utils.paths" in GRAPH["umbert_hf.training.arguments"]
    assert "umbert_hf.catalogue" in GRAPH["umbert_hf.modeling_umbert"]
    assert "umbert_hf.commands.pretrain" in GRAPH["umbert_hf.commands.hparam_search"]
    assert layer("umbert_hf.apps.cli") > layer("umbert_hf.training.loop") > layer("umbert_hf.utils.paths")

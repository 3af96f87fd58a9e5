"""The import graph of the library (ssagan_tf/), read from the sources with `ast`: no module or
package imports itself round a circle, and the packages keep their layers (the judge below
training, augmentation and evaluation; augmentation and evaluation side by side; the command lines
on top). Every import counts, at module level or inside a function (a lazy import is still a
dependency), except those of the entry points: `__main__.py` modules and `if __name__ ==
"__main__":` blocks run only as programs and are never imported by the library."""

import ast
import os

import pytest

from conftest import REPO_ROOT

PACKAGE = "ssagan_tf"


def _modules() -> dict:
    """Dotted module name -> source path, for every module of the package."""
    found = {}
    for folder, _, files in os.walk(os.path.join(REPO_ROOT, PACKAGE)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, REPO_ROOT)[:-3].replace(os.sep, ".")
                found[dotted.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _is_main_block(node) -> bool:
    test = getattr(node, "test", None)
    return (isinstance(node, ast.If) and isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__")


def _imported(module: str, path: str) -> set:
    """The package's modules that `module` imports (`from a import b` names the module a.b when
    there is one, else a). The library imports absolutely; a relative import fails here, unread."""
    out = set()

    def visit(node):
        if _is_main_block(node):
            return
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}:{node.lineno}: a relative import"
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                out.add(name if name in MODULES else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    with open(path, encoding="utf-8") as f:
        visit(ast.parse(f.read(), path))
    return {name for name in out if name == PACKAGE or name.startswith(PACKAGE + ".")} - {module}


def _unit(module: str) -> str:
    """The package a module belongs to (`ssagan_tf.training`), or the module itself when it sits at
    the top of ssagan_tf (`ssagan_tf.metrics`)."""
    parts = module.split(".")
    if len(parts) > 1 and os.path.isdir(os.path.join(REPO_ROOT, PACKAGE, parts[1])):
        return ".".join(parts[:2])
    return module


MODULE_GRAPH = {module: _imported(module, path) for module, path in MODULES.items()
                if not module.endswith(".__main__")}


def _unit_graph() -> dict:
    graph = {}
    for module, targets in MODULE_GRAPH.items():
        graph.setdefault(_unit(module), set()).update(_unit(t) for t in targets if _unit(t) != _unit(module))
    return graph


UNIT_GRAPH = _unit_graph()


def _a_cycle(graph: dict) -> list | None:
    """One circle of the directed graph (a list of nodes, first = last), or None."""
    state, path = {}, []

    def search(node):
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                found = search(target)
                if found:
                    return found
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = search(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_circle():
    assert _a_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _a_cycle({"a": {"b"}, "b": {"c"}, "d": {"a", "c"}}) is None


def test_the_graph_is_read_from_the_sources():
    # Known imports, module-level and lazy, so that a reader that finds none cannot pass the tests below.
    assert "ssagan_tf.judge.scoring" in MODULE_GRAPH["ssagan_tf.training.validation"]
    assert "ssagan_tf.evaluation.runner" in MODULE_GRAPH["ssagan_tf.evaluation"]          # inside a function
    assert {"ssagan_tf.judge", "ssagan_tf.metrics"} <= UNIT_GRAPH["ssagan_tf.evaluation"]
    assert "ssagan_tf.commands" not in UNIT_GRAPH["ssagan_tf.export"]     # its `__main__` block only


def test_no_module_imports_itself_round_a_circle():
    assert _a_cycle(MODULE_GRAPH) is None


def test_no_package_imports_itself_round_a_circle():
    assert _a_cycle(UNIT_GRAPH) is None


@pytest.mark.parametrize("importer, forbidden", [
    ("ssagan_tf.judge", ("ssagan_tf.training", "ssagan_tf.augment", "ssagan_tf.evaluation", "ssagan_tf.commands")),
    ("ssagan_tf.training", ("ssagan_tf.evaluation",)),
    ("ssagan_tf.augment", ("ssagan_tf.evaluation",)),
    ("ssagan_tf.evaluation", ("ssagan_tf.augment",)),
])
def test_the_packages_keep_their_layers(importer, forbidden):
    assert not UNIT_GRAPH[importer] & set(forbidden), sorted(
        (module, target) for module, targets in MODULE_GRAPH.items() if _unit(module) == importer
        for target in targets if _unit(target) in forbidden)


def test_only_the_entry_points_import_the_command_lines():
    assert [unit for unit, targets in UNIT_GRAPH.items()
            if "ssagan_tf.commands" in targets and unit != "ssagan_tf.commands"] == []

"""The package layers of stal (docs/architecture.md), checked on the source with ``ast``.

Every import of a stal module inside ``stal/`` must go to a package lower in :data:`LAYERS`
(or stay in its own package), and none may sit inside a function: a function-local import
is how an import cycle hides.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "stal"
# Bottom to top; a package may import only packages to its left (docs/architecture.md).
LAYERS = ["errors", "progress", "structures", "masks", "losses", "io", "formats", "models", "guidance", "evaluation",
          "synthesis", "demo", "data", "config", "engine", "cli"]


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _stal_imports(tree: ast.AST):
    """(import node, imported stal module, whether it sits inside a function) for every stal import."""
    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == "stal":
                names = [f"{child.module}.{a.name}" if child.module == "stal" else child.module for a in child.names]
                yield from ((child, name, inside) for name in names)
            elif isinstance(child, ast.Import):
                yield from ((child, a.name, inside) for a in child.names if a.name.split(".")[0] == "stal")
            yield from visit(child, inside)
    yield from visit(tree, False)


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        yield path, ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def test_every_package_has_a_layer():
    packages = {_package(module) for _, module in _modules()} - {""}
    assert packages <= set(LAYERS), f"add {sorted(packages - set(LAYERS))} to LAYERS and docs/architecture.md"


def test_imports_run_downhill_and_at_module_level():
    problems = []
    for path, module in _modules():
        own = _package(module)
        for node, target, in_function in _stal_imports(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(ROOT.parent)}:{node.lineno}"
            other = _package(target)
            if in_function:
                problems.append(f"{where}: function-local import of {target}")
            elif own and other and other != own and LAYERS.index(other) > LAYERS.index(own):
                problems.append(f"{where}: stal.{own} imports stal.{other} (uphill)")
    assert not problems, "\n".join(problems)


def test_the_checker_sees_local_and_uphill_imports():
    tree = ast.parse("from stal.engine import run\ndef f():\n    import stal.data.build\n")
    found = [(target, inside) for _, target, inside in _stal_imports(tree)]
    assert found == [("stal.engine", False), ("stal.data.build", True)]

"""The package layers import only downwards (docs/architecture.md, "Layers").

Every module is parsed with ``ast``; top-level and function-body imports alike must be
in the table below.  Inside the library layers, imports of our own packages sit at
module level (a function-body import would hide a dependency); only the app
(``lqflow``) defers its heavy layers (torch, Amaranth, hls4ml) to the commands that use them.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lqir", "models", "hwsim", "rtl", "export", "lqflow")

#: package -> the packages of ours it may import (besides itself)
ALLOWED = {
    "lqir": set(),
    "models": {"lqir"},
    "hwsim": {"lqir"},
    "rtl": {"lqir", "hwsim"},
    "export": {"lqir", "models", "hwsim"},
    "lqflow": {"lqir", "models", "hwsim", "rtl", "export"},
}
#: rtl sees hwsim through its public API only: the package, its cycle model and the stages it models
HWSIM_PUBLIC = {"hwsim", "hwsim.cycles", "hwsim.stages"}
LAZY_OK = {"lqflow"}


def _imports(path):
    """(imported module, line, inside a function) for every absolute import of ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0:
                found.append((child.module, child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


def _modules():
    return [(pkg, path) for pkg in PACKAGES for path in sorted((ROOT / pkg).rglob("*.py"))]


@pytest.mark.parametrize("package, path", _modules(), ids=lambda v: str(v.relative_to(ROOT)) if isinstance(v, Path) else v)
def test_imports_point_down(package, path):
    problems = []
    for module, line, in_function in _imports(path):
        top = module.split(".")[0]
        if top not in PACKAGES or top == package:
            continue
        where = f"{path.relative_to(ROOT)}:{line}: {module}"
        if top not in ALLOWED[package]:
            problems.append(f"{where} ({package} may import only {sorted(ALLOWED[package]) or 'nothing of ours'})")
        elif package == "rtl" and top == "hwsim" and module not in HWSIM_PUBLIC:
            problems.append(f"{where} (rtl uses hwsim's public API only: {sorted(HWSIM_PUBLIC)})")
        elif in_function and package not in LAZY_OK:
            problems.append(f"{where} (import it at module level: a function-body import hides the dependency)")
    assert not problems, "\n".join(problems)


def test_every_package_is_checked_and_installed():
    found = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name not in ("tests",)}
    assert found == set(PACKAGES)
    import tomllib

    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert sorted(listed) == sorted(PACKAGES)   # tests are not installed


def test_the_checker_sees_function_body_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import numpy\n\ndef f():\n    from export.lower import lower\n    return lower\n")
    assert ("export.lower", 4, True) in _imports(src)
    assert ("numpy", 1, False) in _imports(src)

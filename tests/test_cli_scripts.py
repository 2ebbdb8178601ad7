"""Console scripts ([project.scripts]) and the tools/*.py, data_prep/*.py wrappers run one main()."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
WRAPPERS = sorted(p for folder in ("tools", "data_prep") for p in (REPO / folder).glob("*.py")
                  if "runs the console script of" in p.read_text())


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_script_runs_help(name: str, capsys: pytest.CaptureFixture) -> None:
    module, func = SCRIPTS[name].split(":")
    main = getattr(importlib.import_module(module), func)
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize("path", WRAPPERS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_wrapper_runs_the_module_of_its_name(path: Path) -> None:
    """A wrapper imports main from stal.cli.<its own name>, which a console script also runs."""
    imports = [n for n in ast.parse(path.read_text()).body if isinstance(n, ast.ImportFrom)]
    assert [(n.module, [a.name for a in n.names]) for n in imports] == [(f"stal.cli.{path.stem}", ["main"])]
    assert f"stal.cli.{path.stem}:main" in SCRIPTS.values() or path.stem.startswith(("eval_", "convert_"))


def test_every_command_module_has_a_script_or_is_a_library() -> None:
    modules = {p.stem for p in (REPO / "stal" / "cli").glob("*.py")} - {"__init__"}
    scripted = {v.split(":")[0].rsplit(".", 1)[1] for v in SCRIPTS.values()}
    assert modules - scripted <= {"act_index", "common"}  # libraries of the commands


def test_installed_console_script() -> None:
    """The README's install (pip install -e '.[test]') puts stal-train next to the interpreter."""
    script = Path(sys.executable).parent / "stal-train"
    if not script.exists():
        pytest.skip(f"{script} not installed (an environment without the project's install)")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "usage: stal-train" in proc.stdout, proc.stderr

"""The typed public API: lazy package doors whose type-checker view matches their run-time view,
a shipped ``py.typed``, and mypy catching a misspelt method on a loaded scorer."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import prefalign

SRC = Path(prefalign.__file__).parent
ROOT = SRC.parent.parent
DOORS = [
    "prefalign",
    *(f"prefalign.{p}" for p in ("adapt", "annotate", "benchmark", "data", "evaluate", "scoring", "train")),
]


def _door(name: str) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """``_LAZY``, the names imported under ``if TYPE_CHECKING:`` (name -> module), and ``__all__``."""
    path = SRC / "__init__.py" if name == "prefalign" else SRC / name.split(".")[1] / "__init__.py"
    tree = ast.parse(path.read_text())
    lazy, typed, all_ = {}, {}, None
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id == "_LAZY":
                lazy = ast.literal_eval(node.value)
            elif node.targets[0].id == "__all__":
                all_ = ast.literal_eval(node.value)  # a literal: raises otherwise
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom), ast.unparse(imp)
                typed.update({a.name: imp.module for a in imp.names})
    assert all_ is not None, f"{path}: no literal __all__"
    return lazy, typed, all_


@pytest.mark.parametrize("name", DOORS)
def test_doors_show_checkers_what_they_load(name):
    lazy, typed, all_ = _door(name)
    assert typed == lazy  # the same names from the same modules
    assert sorted(all_) == sorted([*lazy, *(["__version__"] if name == "prefalign" else [])])
    module = importlib.import_module(name)
    for attr in lazy:
        assert getattr(module, attr) is getattr(importlib.import_module(lazy[attr]), attr)


def test_importing_the_doors_stays_light():
    code = "import sys, prefalign, prefalign.evaluate, prefalign.scoring, prefalign.adapt; print(sorted(m for m in ('torch', 'matplotlib', 'diffusers') if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(SRC.parent)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


def test_py_typed_ships():
    assert (SRC / "py.typed").is_file()
    package_data = (ROOT / "pyproject.toml").read_text().split("[tool.setuptools.package-data]")[1]
    assert '"py.typed"' in package_data.split("[")[1]


def test_mypy_flags_a_misspelt_scorer_method(tmp_path):
    api = pytest.importorskip("mypy.api")
    script = tmp_path / "user_script.py"
    script.write_text(
        textwrap.dedent(
            """
            import prefalign
            import prefalign.evaluate
            from prefalign.scoring import ScorerLike

            s = prefalign.load_scorer("models/hps-v2")
            s.score(["a.png"], "a cat")
            s.scoer(["a.png"], "a cat")
            r: ScorerLike = prefalign.evaluate.RandomScorer(3)
            prefalign.load_scorr("x")
            """
        )
    )
    config = ROOT / "pyproject.toml"
    env_path = os.environ.get("MYPYPATH")
    os.environ["MYPYPATH"] = str(SRC.parent)
    try:
        stdout, _, status = api.run(
            [
                str(script),
                "--config-file",
                str(config),
                "--cache-dir",
                str(tmp_path / "cache"),
                "--no-error-summary",
            ]
        )
    finally:
        if env_path is None:
            os.environ.pop("MYPYPATH")
        else:
            os.environ["MYPYPATH"] = env_path
    assert status == 1
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert any('"scoer"' in e and "user_script.py:8" in e for e in errors), stdout
    assert any('"load_scorr"' in e and "user_script.py:10" in e for e in errors), stdout
    # score() and the protocol assignment type-check: no error on any other line
    assert all(("user_script.py:8:" in e or "user_script.py:10:" in e) for e in errors), stdout


def test_a_name_is_not_shadowed_by_its_same_named_submodule():
    # `prefalign.evaluate.agreement` is the function in `prefalign/evaluate/agreement.py`:
    # importing the submodule binds the module on the package, which used to replace the name.
    import types

    import prefalign.evaluate.agreement  # noqa: F401
    from prefalign.evaluate import agreement
    from prefalign.evaluate.agreement import agreement as defined

    assert not isinstance(agreement, types.ModuleType) and agreement is defined

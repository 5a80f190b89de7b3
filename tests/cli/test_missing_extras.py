"""A missing optional library is one line naming the extra to install, not a traceback."""

from __future__ import annotations

import sys

import pytest

from prefalign.cli.main import main
from prefalign.extras import MODULE_EXTRAS, missing_extra


def test_generate_without_diffusers_names_the_extra(tmp_path, monkeypatch, capsys):
    (tmp_path / "p.txt").write_text("a cat\n")
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers -> ModuleNotFoundError
    argv = [
        "generate",
        "--base",
        str(tmp_path / "sd"),
        "--prompts",
        str(tmp_path / "p.txt"),
        "--out",
        str(tmp_path / "o"),
    ]
    (tmp_path / "sd").mkdir()
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        (tmp_path / "sd" / part).mkdir()
    (tmp_path / "sd" / "model_index.json").write_text("{}")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert "pip install 'prefalign[diffusion]'" in err and "diffusers" in err


def test_every_extra_in_pyproject_is_named_and_unknown_modules_are_not_hidden():
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    section = text.split("[project.optional-dependencies]")[1].split("\n[")[0]
    extras = re.findall(r"^([a-z]+) = \[", section, re.MULTILINE)
    assert {"train", "diffusion", "annotate"} <= set(extras)
    assert set(MODULE_EXTRAS.values()) <= set(extras)
    err = ModuleNotFoundError("No module named 'sqlalchemy.orm'", name="sqlalchemy.orm")
    assert "prefalign[annotate]" in missing_extra(err)
    assert missing_extra(ModuleNotFoundError("x", name="not_an_extra_module")) is None
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    install = next(line for line in readme.splitlines() if "pip install" in line and "[" in line)
    for extra in extras:
        if extra != "all":
            assert extra in install, f"README's install line does not name the {extra!r} extra"


@pytest.mark.parametrize("module", ["yaml", "multipart"])
def test_pip_names_differ_from_module_names(module):
    message = missing_extra(ModuleNotFoundError("x", name=module))
    assert ("pyyaml" if module == "yaml" else "python-multipart") in message


def test_a_command_group_whose_options_need_an_extra_still_lists_and_says_which(monkeypatch, capsys):
    import prefalign.cli.push as push_cli

    def register(sub):
        raise ModuleNotFoundError("No module named 'fastapi'", name="fastapi")

    monkeypatch.setattr(push_cli, "register", register)
    assert main(["push", "anything", "--repo", "me/x"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "prefalign push: error: this command needs fastapi, which is not installed: "
        "pip install 'prefalign[annotate]' (or 'prefalign[all]')"
    )

"""`train scorer|reward`: an existing output directory is refused in one line naming --overwrite."""

from __future__ import annotations

import pytest

from prefalign.cli.main import main


@pytest.mark.parametrize("kind", ["scorer", "reward"])
def test_existing_model_directory_is_refused(kind, tiny_clip32, small_choice_data, tmp_path, capsys):
    out = tmp_path / "model"
    out.mkdir()
    (out / "model.safetensors").write_text("an earlier model")
    argv = [
        "train",
        kind,
        "--data",
        str(small_choice_data),
        "--base",
        str(tiny_clip32),
        "--output_dir",
        str(out),
    ]
    assert main([*argv, "--max-steps", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(out) in err and "--overwrite" in err
    assert (out / "model.safetensors").read_text() == "an earlier model"

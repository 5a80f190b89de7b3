"""`adapt train-*` shows a progress bar with steps/s and the time left; --disable_tqdm hides it."""

from __future__ import annotations

from prefalign.cli.main import main


def _argv(data, base, out):
    return [
        "adapt", "train-lora", "--data", str(data), "--base", str(base), "--output_dir", str(out),
        "--max_steps", "2", "--per_device_train_batch_size", "1", "--resolution", "32", "--rank", "2",
        "--save_steps", "0", "--cpu",
    ]  # fmt: skip


def test_training_progress_bar(tmp_path, shapes_data, tiny_sd, capsys):
    assert main(_argv(shapes_data, tiny_sd, tmp_path / "a")) == 0
    err = capsys.readouterr().err
    assert "training: 100%" in err and "2/2" in err
    assert "step/s" in err or "s/step" in err  # tqdm's rate
    assert "<00:00" in err  # elapsed<remaining
    assert "loss=" in err
    assert main([*_argv(shapes_data, tiny_sd, tmp_path / "b"), "--disable_tqdm"]) == 0
    assert "training:" not in capsys.readouterr().err

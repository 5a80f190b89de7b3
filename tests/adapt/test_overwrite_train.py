"""adapt train-*: a finished run in --output_dir is refused unless --overwrite; a checkpointed run is resumed,
which is not an overwrite; --overwrite never deletes a directory that holds anything else."""

from __future__ import annotations

import json

from prefalign.cli.main import main


def _argv(data, base, out, *extra, steps=2):
    return [
        "adapt", "train-lora", "--data", str(data), "--base", str(base), "--output_dir", str(out),
        "--max_steps", str(steps), "--per_device_train_batch_size", "1", "--resolution", "32", "--rank", "2",
        "--cpu", "--disable_tqdm", *extra,
    ]  # fmt: skip


def test_finished_run_refused_then_overwritten_and_checkpoints_resumed(
    tmp_path, shapes_data, tiny_sd, capsys
):
    out = tmp_path / "lora"
    assert main(_argv(shapes_data, tiny_sd, out, "--save_steps", "1", "--logging_steps", "1")) == 0
    first = (out / "training_log.jsonl").read_text()
    capsys.readouterr()
    assert main(_argv(shapes_data, tiny_sd, out)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(out) in err and "--overwrite" in err and "--resume_from_checkpoint" in err
    assert (out / "training_log.jsonl").read_text() == first  # untouched

    # resume is not overwrite: the checkpoint of step 1 continues to step 3 (a constant-rate run
    # may be extended), repeating step 2 exactly
    argv = _argv(
        shapes_data,
        tiny_sd,
        out,
        "--save_steps",
        "1",
        "--logging_steps",
        "1",
        "--resume_from_checkpoint",
        steps=3,
    )
    assert main(argv) == 0

    def steps(text):
        return [(row["step"], row["loss"]) for row in map(json.loads, text.splitlines())]

    log = steps((out / "training_log.jsonl").read_text())
    assert log[:2] == steps(first) and [s for s, _ in log] == [1, 2, 3]

    assert main(_argv(shapes_data, tiny_sd, out, "--overwrite", "--seed", "1")) == 0
    assert not (out / "checkpoints").exists()  # the old run's checkpoints went with it
    assert (out / "training_log.jsonl").read_text() != first
    assert (out / "pytorch_lora_weights.safetensors").is_file()


def test_overwrite_refuses_a_directory_with_other_files(tmp_path, shapes_data, tiny_sd, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(_argv(shapes_data, tiny_sd, out, "--overwrite")) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"

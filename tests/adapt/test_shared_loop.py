"""The shared loop core (``prefalign.training.loop``) under the LoRA, reward-weighted and DPO
trainers: bf16 + accumulation exact resume from ``save_state`` checkpoints (adapter-only for
LoRA), Ctrl-C, frozen towers untouched (and cast to bf16 under mixed precision), TensorBoard."""

from __future__ import annotations

import json
import shutil
import signal

import pytest
import torch

from prefalign.adapt.trainer import DiffusionFineTuner
from prefalign.training.loop import TrainingInterrupted

from .conftest import make_trainer, trained_weights

KINDS = ["lora", "rwr", "dpo"]


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kind", KINDS)
def test_bf16_with_accumulation_resumes_exactly_from_save_state(kind, tmp_path, shapes_data, tiny_sd):
    settings = dict(max_steps=4, save_steps=2, gradient_accumulation_steps=2, mixed_precision="bf16")
    straight = make_trainer(kind, shapes_data, tiny_sd, tmp_path / "straight", **settings)
    straight.train()
    assert straight.accelerator.mixed_precision == "bf16"
    checkpoint = tmp_path / "straight" / "checkpoints" / "step-0000002"
    files = {p.name for p in checkpoint.iterdir()}
    assert {"optimizer.bin", "trainer_state.json", "training_config.yaml"} <= files
    if kind == "rwr":  # the whole UNet trains: accelerate saves it
        assert "model.safetensors" in files and "trainable.safetensors" not in files
    else:  # LoRA: the adapter only, never the frozen UNet
        assert "trainable.safetensors" in files and "model.safetensors" not in files
        from safetensors.torch import load_file

        assert all("lora_" in k for k in load_file(checkpoint / "trainable.safetensors"))

    interrupted = tmp_path / "interrupted"
    shutil.copytree(tmp_path / "straight" / "checkpoints", interrupted / "checkpoints")
    resumed = make_trainer(
        kind, shapes_data, tiny_sd, interrupted, resume_from_checkpoint="latest", **settings
    )
    resumed.train()
    assert same(trained_weights(kind, tmp_path / "straight"), trained_weights(kind, interrupted))
    logs = [
        [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
        for out in (tmp_path / "straight", interrupted)
    ]
    assert [(r["step"], r["loss"]) for r in logs[0]] == [(r["step"], r["loss"]) for r in logs[1]]


class CtrlCAtStep2(DiffusionFineTuner):
    """Presses Ctrl-C (a real SIGINT) during the second optimizer step."""

    def _micro_loss(self, step, micro, record):
        if step == 1 and micro == 0:
            signal.raise_signal(signal.SIGINT)
        return super()._micro_loss(step, micro, record)


def test_ctrl_c_writes_a_checkpoint_and_the_resumed_run_is_exact(tmp_path, shapes_data, tiny_sd):
    straight = make_trainer("lora", shapes_data, tiny_sd, tmp_path / "a", max_steps=3)
    straight.train()
    stopped = make_trainer("lora", shapes_data, tiny_sd, tmp_path / "b", cls=CtrlCAtStep2, max_steps=3)
    with pytest.raises(TrainingInterrupted) as info:
        stopped.train()
    assert info.value.checkpoint == tmp_path / "b" / "checkpoints" / "step-0000002"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    make_trainer(
        "lora", shapes_data, tiny_sd, tmp_path / "b", max_steps=3, resume_from_checkpoint="latest"
    ).train()
    assert same(trained_weights("lora", tmp_path / "a"), trained_weights("lora", tmp_path / "b"))


@pytest.mark.parametrize("kind", KINDS)
def test_frozen_towers_stay_bit_identical(kind, tmp_path, shapes_data, tiny_sd):
    from prefalign.adapt.base_model import load_components

    trainer = make_trainer(kind, shapes_data, tiny_sd, tmp_path / "out", max_steps=2)
    trainer.train()
    base = load_components(str(tiny_sd))
    for name in ("vae", "text_encoder"):
        want = getattr(base, name).state_dict()
        got = getattr(trainer.sd, name).state_dict()
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), name
    unet = trainer.accelerator.unwrap_model(trainer.unet)
    base_unet = base.unet.state_dict()
    frozen = {n: p for n, p in unet.named_parameters() if not p.requires_grad}
    trained = {n: p for n, p in unet.named_parameters() if p.requires_grad}
    if kind == "rwr":
        assert not frozen  # Lee et al. train every UNet weight
    else:
        assert frozen and all(
            torch.equal(p, base_unet[n.replace(".base_layer", "")]) for n, p in frozen.items()
        )
    assert any(not torch.equal(p, base_unet.get(n, torch.zeros_like(p))) for n, p in trained.items())


@pytest.mark.parametrize("kind", ["lora", "rwr"])
def test_bf16_casts_the_frozen_towers_and_keeps_the_trained_weights_fp32(
    kind, tmp_path, shapes_data, tiny_sd
):
    trainer = make_trainer(kind, shapes_data, tiny_sd, tmp_path / "out", max_steps=1, mixed_precision="bf16")
    trainer.train()
    assert {p.dtype for p in trainer.sd.vae.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in trainer.sd.text_encoder.parameters()} == {torch.bfloat16}
    unet = trainer.accelerator.unwrap_model(trainer.unet)
    assert {p.dtype for p in unet.parameters() if p.requires_grad} == {torch.float32}
    frozen = {p.dtype for p in unet.parameters() if not p.requires_grad}
    assert frozen == ({torch.bfloat16} if kind == "lora" else set())


def test_tensorboard_gets_the_logged_loss(tmp_path, shapes_data, tiny_sd):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = make_trainer(
        "lora", shapes_data, tiny_sd, tmp_path / "tb", max_steps=2, report_to="tensorboard"
    )
    trainer.train()
    events = list((tmp_path / "tb" / "logs" / trainer.name).glob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    rows = [json.loads(line) for line in (tmp_path / "tb" / "training_log.jsonl").read_text().splitlines()]
    logged = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    assert [s for s, _ in logged] == [r["step"] for r in rows] == [1, 2]
    assert [v for _, v in logged] == pytest.approx([r["loss"] for r in rows], rel=1e-6)


def test_an_interrupted_adapt_command_exits_130_naming_the_checkpoint(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    import prefalign.adapt.lora
    from prefalign.cli.main import main

    def interrupted(config):
        raise TrainingInterrupted(Path(config.output_dir) / "checkpoints" / "step-0000007")

    monkeypatch.setattr(prefalign.adapt.lora, "train_lora", interrupted)
    code = main(["adapt", "train-lora", "--data", "d", "--base", "b", "--output_dir", str(tmp_path / "o")])
    assert code == 130
    err = capsys.readouterr().err
    assert "checkpoint written to" in err and "step-0000007" in err


def test_linear_schedule_with_warmup_is_followed_and_resumes_exactly(tmp_path, shapes_data, tiny_sd):
    """--lr_scheduler_type/--warmup_steps (transformers' get_scheduler) in the diffusion trainers:
    the logged rate of each step follows warm-up then linear decay, and a resumed run restores the
    scheduler from the checkpoint (a scheduler restarted at step 0 would give other weights)."""
    settings = dict(
        max_steps=4,
        save_steps=2,
        logging_steps=1,
        learning_rate=1e-3,
        lr_scheduler_type="linear",
        warmup_steps=2,
    )
    make_trainer("lora", shapes_data, tiny_sd, tmp_path / "straight", **settings).train()
    log = [
        json.loads(line) for line in (tmp_path / "straight" / "training_log.jsonl").read_text().splitlines()
    ]
    assert [r["learning_rate"] for r in log] == pytest.approx([0.0, 5e-4, 1e-3, 5e-4])
    interrupted = tmp_path / "interrupted"
    shutil.copytree(tmp_path / "straight" / "checkpoints", interrupted / "checkpoints")
    make_trainer(
        "lora", shapes_data, tiny_sd, interrupted, resume_from_checkpoint="latest", **settings
    ).train()
    assert same(trained_weights("lora", tmp_path / "straight"), trained_weights("lora", interrupted))
    resumed_log = [json.loads(line) for line in (interrupted / "training_log.jsonl").read_text().splitlines()]
    assert [r["learning_rate"] for r in resumed_log] == [r["learning_rate"] for r in log]

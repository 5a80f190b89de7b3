"""The shared loop core (``prefalign.training.loop``) under the preference and reward trainers:
exact resume under bf16 with gradient accumulation, frozen weights untouched, logging_steps,
TensorBoard through ``report_to``, fp16 refused without a GPU, the fp16 grad scaler checkpointed."""

from __future__ import annotations

import json
import signal

import pytest
import torch
from safetensors.torch import load_file

from prefalign.train import TrainingInterrupted
from prefalign.train.config import TrainConfigError

from .conftest import trainer_case


def interrupt_at(step: int):
    """A callback that presses Ctrl-C (a real SIGINT) after optimizer step ``step``."""

    def callback(trainer, state):
        if state.step == step:
            signal.raise_signal(signal.SIGINT)

    return callback


@pytest.fixture
def case(request, tiny_clip32, tiny_scorer32, small_choice_data, small_rating_data):
    """``kind`` -> a function building that trainer on its tiny data and base."""
    kind = request.param
    data, base = (small_choice_data, tiny_clip32) if kind == "scorer" else (small_rating_data, tiny_scorer32)

    def make(out, **overrides):
        return trainer_case(kind, data, base, out, **overrides)

    make.kind = kind
    return make


@pytest.mark.parametrize("case", ["scorer", "reward"], indirect=True)
def test_bf16_with_accumulation_resumes_exactly(case, tmp_path):
    # 30 training records, batches of 4: 8 batches per epoch, 4 optimizer steps of 2 batches;
    # 6 steps cross an epoch boundary, the interruption at 3 is inside the first epoch.
    settings = dict(
        per_device_train_batch_size=4, gradient_accumulation_steps=2, mixed_precision="bf16", max_steps=6
    )
    reference, weights = case(tmp_path / "a", **settings)
    ref = reference.train()
    assert reference.accelerator.mixed_precision == "bf16"
    assert len(ref.state.train_log) == 6
    if case.kind == "scorer":  # 30 records: the run crosses an epoch boundary
        assert ref.state.train_log[-1]["epoch"] == 1

    stopped, _ = case(tmp_path / "b", **settings)
    stopped.callbacks.append(interrupt_at(3))
    with pytest.raises(TrainingInterrupted) as info:
        stopped.train()
    assert info.value.checkpoint.name == "step-0000003"
    state = json.loads((info.value.checkpoint / "trainer_state.json").read_text())
    assert (state["step"], state["batch_in_epoch"]) == (3, 6)  # 3 steps x 2 accumulated batches

    resumed_trainer, _ = case(tmp_path / "b", resume_from_checkpoint="latest", **settings)
    resumed = resumed_trainer.train()
    assert [r["loss"] for r in resumed.state.train_log] == [r["loss"] for r in ref.state.train_log]
    a, b = load_file(tmp_path / "a" / weights), load_file(tmp_path / "b" / weights)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("case", ["scorer", "reward"], indirect=True)
def test_frozen_parameters_stay_bit_identical(case, tmp_path):
    trainer, _ = case(tmp_path / "m", max_steps=3, gradient_accumulation_steps=2)
    snapshots = {}
    build = trainer.build_model

    def build_and_snapshot():
        model = build()
        frozen = trainer.scorer.model if hasattr(trainer, "scorer") else model
        snapshots["frozen"] = {n: p.detach().clone() for n, p in frozen.named_parameters()}
        snapshots["module"] = frozen
        snapshots["trainable"] = {
            n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad
        }
        snapshots["model"] = model
        return model

    trainer.build_model = build_and_snapshot
    trainer.train()
    frozen = {n: p for n, p in snapshots["module"].named_parameters() if not p.requires_grad}
    assert frozen and all(torch.equal(p, snapshots["frozen"][n]) for n, p in frozen.items())
    now = dict(snapshots["model"].named_parameters())
    assert any(not torch.equal(now[n], p) for n, p in snapshots["trainable"].items())


@pytest.mark.parametrize("case", ["scorer"], indirect=True)
def test_tensorboard_gets_the_logged_metrics_and_logging_steps_thins_the_log(case, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer, _ = case(tmp_path / "tb", max_steps=4, logging_steps=2, report_to="tensorboard")
    result = trainer.train()
    assert [r["step"] for r in result.state.train_log] == [2, 4]
    events = list((tmp_path / "tb" / "logs" / trainer.name).glob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    logged = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    want = [(r["step"], r["loss"]) for r in result.state.train_log]
    assert [s for s, _ in logged] == [s for s, _ in want]
    assert [v for _, v in logged] == pytest.approx([v for _, v in want], rel=1e-6)
    assert "eval_accuracy" in acc.Tags()["scalars"]


@pytest.mark.parametrize("case", ["scorer"], indirect=True)
def test_fp16_without_a_gpu_is_refused_and_with_one_checkpoints_the_grad_scaler(case, tmp_path):
    if not torch.cuda.is_available():
        trainer, _ = case(tmp_path / "cpu", mixed_precision="fp16", cpu=True)
        with pytest.raises(TrainConfigError, match="fp16 needs a GPU"):
            trainer.train()
        pytest.skip("fp16 needs a GPU: the refusal on a CPU is checked, the scaler state is not")
    trainer, _ = case(tmp_path / "gpu", mixed_precision="fp16", max_steps=3, save_steps=2)
    trainer.train()
    checkpoint = tmp_path / "gpu.checkpoints" / "step-0000002"
    assert (checkpoint / "scaler.pt").is_file()


@pytest.mark.parametrize("case", ["scorer"], indirect=True)
def test_gradient_checkpointing_recomputes_to_the_same_weights(case, tmp_path):
    """--gradient_checkpointing (transformers' CLIP layers recomputed in backward) trades time for
    memory without changing what is learnt."""
    plain, weights = case(tmp_path / "plain", max_steps=3)
    plain.train()
    checkpointed, _ = case(tmp_path / "ckpt", max_steps=3, gradient_checkpointing=True)
    checkpointed.train()
    clip = checkpointed.clip
    assert getattr(clip, "is_activation_checkpointing", None) or clip.is_gradient_checkpointing
    a, b = load_file(tmp_path / "plain" / weights), load_file(tmp_path / "ckpt" / weights)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)

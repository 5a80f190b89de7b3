"""Atomic writes give outputs the usual mode (``0o666 & ~umask``), not ``mkstemp``'s 0600."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from prefalign.files import current_umask, write_atomic, write_json_atomic


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_write_follows_umask(tmp_path: Path, mask: int, expected: int) -> None:
    with umask(mask):
        assert current_umask() == mask
        write_atomic(tmp_path / "a.bin", b"x")
        write_atomic(tmp_path / "b.txt", lambda fh: fh.write(b"y"))
        write_json_atomic(tmp_path / "c.json", {"a": 1})
    for name in ("a.bin", "b.txt", "c.json"):
        assert mode(tmp_path / name) == expected, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.txt", "c.json"]


def test_private_mode_on_request(tmp_path: Path) -> None:
    with umask(0o022):
        write_atomic(tmp_path / "secret", "s", mode=0o600)
    assert mode(tmp_path / "secret") == 0o600


def test_records_parquet_is_readable_by_others(tmp_path: Path) -> None:
    from prefalign.data.dataset import DatasetWriter, Record

    with umask(0o022), DatasetWriter(tmp_path / "ds", check_images="off") as writer:
        writer.write(Record(prompt="a cat", images=["a.png", "b.png"], chosen=1))
    assert mode(tmp_path / "ds" / "records.parquet") == 0o644


def test_converted_model_directory_is_readable_by_others(tmp_path: Path) -> None:
    from prefalign.scoring.convert import _prepare_out, _publish

    with umask(0o022):
        tmp = _prepare_out(tmp_path / "model", overwrite=False)
        write_atomic(tmp / "config.json", "{}")
        _publish(tmp, tmp_path / "model")
    assert mode(tmp_path / "model") == 0o755
    assert mode(tmp_path / "model" / "config.json") == 0o644


def test_annotation_database_stays_private(tmp_path: Path) -> None:
    from prefalign.annotate.storage import _create_private

    with umask(0o022):
        _create_private(tmp_path / "annotations.db")
    assert mode(tmp_path / "annotations.db") == 0o600


def test_safetensors_outputs_are_shared(tmp_path: Path) -> None:
    """safetensors' save_file writes 0600; the LoRA a UI must read gets the usual mode."""
    import torch
    from safetensors.torch import save_file

    from prefalign.files import share_written

    with umask(0o022):
        save_file({"a": torch.zeros(2)}, str(tmp_path / "w.safetensors"))
        (tmp_path / "sub").mkdir()
        save_file({"a": torch.zeros(2)}, str(tmp_path / "sub" / "x.safetensors"))
        share_written(tmp_path)
    assert mode(tmp_path / "w.safetensors") == 0o644
    assert mode(tmp_path / "sub" / "x.safetensors") == 0o644


def test_saved_lora_adapter_is_readable_by_others(tmp_path: Path) -> None:
    from peft import LoraConfig

    from prefalign.adapt.adapter import LORA_WEIGHTS_FILE, save_lora_adapter
    from prefalign.testing.diffusion import tiny_sd_components

    unet = tiny_sd_components()["unet"]
    unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_v"]))
    with umask(0o022):
        save_lora_adapter(unet, tmp_path / "lora", {"base": "x"})
    assert mode(tmp_path / "lora" / LORA_WEIGHTS_FILE) == 0o644

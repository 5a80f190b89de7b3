"""`prefalign push`: the staged upload (files and generated card); the network call is faked."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefalign.cli.main import main
from prefalign.hub import PushError, detect_kind, push, stage


class FakeApi:
    """Records what HfApi would have been asked to do, and what the staged folder held then."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo, **kwargs):
        self.calls.append(("create_repo", repo, kwargs))

    def upload_folder(self, *, folder_path, repo_id, repo_type, commit_message):
        files = sorted(
            p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*") if p.is_file()
        )
        self.calls.append(
            ("upload_folder", repo_id, repo_type, files, (Path(folder_path) / "README.md").read_text())
        )
        return "https://huggingface.co/me/x/commit/abc"


def _adapter(directory: Path) -> Path:
    directory.mkdir()
    (directory / "pytorch_lora_weights.safetensors").write_bytes(b"weights")
    (directory / "prefalign_adapter.json").write_text(
        '{"method": "lora", "identifier": "Weird image. ", "base": "runwayml/stable-diffusion-v1-5", "steps": 3}'
    )
    (directory / ".cache").mkdir()
    (directory / ".cache" / "junk").write_text("x")
    return directory


def test_adapter_is_staged_with_a_card_saying_how_it_was_made(tmp_path, monkeypatch):
    adapter = _adapter(tmp_path / "lora")
    staged = stage(adapter, "me/sd-hps-lora", tmp_path / "stage")
    assert (staged.kind, staged.repo_type) == ("adapter", "model")
    assert staged.files == ["README.md", "prefalign_adapter.json", "pytorch_lora_weights.safetensors"]
    card = (tmp_path / "stage" / "README.md").read_text()
    assert (
        card.startswith("---\nlibrary_name: diffusers\n")
        and "base_model: runwayml/stable-diffusion-v1-5" in card
    )
    assert (
        'pipe.load_lora_weights("me/sd-hps-lora")' in card
        and "`Weird image.`" in card
        and '"steps": 3' in card
    )
    assert not (adapter / "README.md").exists()  # the user's directory is left as it was
    api = FakeApi()
    assert push(staged, "me/sd-hps-lora", private=True, api=api).endswith("/commit/abc")
    assert api.calls[0] == (
        "create_repo",
        "me/sd-hps-lora",
        {"repo_type": "model", "private": True, "exist_ok": True},
    )
    assert api.calls[1][:4] == ("upload_folder", "me/sd-hps-lora", "model", staged.files)


def test_dataset_card_counts_and_outside_images_are_refused(tmp_path):
    from prefalign.testing import make_choice_dataset

    ds = make_choice_dataset(tmp_path / "ds", 6)
    assert detect_kind(ds) == "dataset"
    staged = stage(ds, "me/choices", tmp_path / "stage")
    assert staged.repo_type == "dataset" and "records.parquet" in staged.files
    card = (tmp_path / "stage" / "README.md").read_text()
    assert "data_files: records.parquet" in card and "records: 6; images: 12" in card
    assert main(["data", "split", str(ds), "--test-size", "2", "--out", str(tmp_path / "split")]) == 0
    with pytest.raises(PushError, match="point outside the dataset"):
        stage(tmp_path / "split", "me/choices", tmp_path / "stage2")


def test_cli_stage_only_and_errors(tmp_path, capsys, monkeypatch):
    adapter = _adapter(tmp_path / "lora")
    assert main(["push", str(adapter), "--repo", "me/x", "--stage-only", str(tmp_path / "st")]) == 0
    assert "staged 3 files (adapter, model repo)" in capsys.readouterr().out
    assert main(["push", str(adapter), "--repo", "not-a-repo", "--stage-only", str(tmp_path / "st2")]) == 2
    assert "expected user/name" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["push", str(tmp_path / "empty"), "--repo", "me/x"]) == 2
    assert "not a prefalign model" in capsys.readouterr().err

    import prefalign.hub as hub

    api = FakeApi()
    monkeypatch.setattr("huggingface_hub.HfApi", lambda: api)
    assert main(["push", str(adapter), "--repo", "me/x"]) == 0
    assert capsys.readouterr().out.strip() == "https://huggingface.co/me/x/commit/abc"
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"] and hub.CARD_FILE in api.calls[1][3]


def test_an_upload_failure_is_one_line(tmp_path):
    class Offline(FakeApi):
        def create_repo(self, repo, **kwargs):
            raise OSError("Cannot reach https://huggingface.co: offline mode is enabled.\nmore detail")

    staged = stage(_adapter(tmp_path / "lora"), "me/x", tmp_path / "stage")
    with pytest.raises(PushError) as info:
        push(staged, "me/x", api=Offline())
    assert "\n" not in str(info.value) and "me/x: upload failed (Cannot reach" in str(info.value)


def test_adapter_card_with_a_local_base_and_a_kohya_export(tmp_path, monkeypatch):
    """The snippet used the local base path (models-demo/tiny-sd); a kohya export went unmentioned."""
    import torch
    from safetensors.torch import save_file

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models-demo" / "tiny-sd").mkdir(parents=True)
    adapter = tmp_path / "lora"
    adapter.mkdir()
    (adapter / "pytorch_lora_weights.safetensors").write_bytes(b"weights")
    (adapter / "prefalign_adapter.json").write_text(
        '{"method": "lora", "base": "models-demo/tiny-sd", "family": "sd1"}'
    )
    card = stage(adapter, "me/lora", tmp_path / "s1").folder.joinpath("README.md").read_text()
    assert "models-demo" not in card.split("```")[1] and "base_model:" not in card
    assert 'StableDiffusionPipeline.from_pretrained("YOUR_SD15_BASE")  # your SD 1.5 base' in card
    assert "prefalign adapt export-lora DIR --format kohya" in card

    # the metadata prefalign's kohya export writes (prefalign.adapt.export.kohya_state_dict)
    metadata = {"ss_network_module": "networks.lora", "ss_network_dim": "4", "ss_network_alpha": "4"}
    save_file({"lora_unet_x.alpha": torch.tensor(4.0)}, adapter / "hps-lora.safetensors", metadata=metadata)
    staged = stage(adapter, "me/lora", tmp_path / "s2")
    card = (staged.folder / "README.md").read_text()
    assert "hps-lora.safetensors" in staged.files
    assert "`hps-lora.safetensors` into `models/Lora/`" in card
    assert "`pytorch_lora_weights.safetensors` into" not in card

    (adapter / "prefalign_adapter.json").write_text(
        '{"base": "stabilityai/stable-diffusion-xl-base-1.0", "family": "sdxl"}'
    )
    card = stage(adapter, "me/lora", tmp_path / "s3").folder.joinpath("README.md").read_text()
    assert 'StableDiffusionXLPipeline.from_pretrained("stabilityai/stable-diffusion-xl-base-1.0")' in card
    assert "base_model: stabilityai/stable-diffusion-xl-base-1.0" in card

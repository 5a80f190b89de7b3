"""`--base model.safetensors`: a single-file SD 1.x checkpoint (the original LDM layout, as AUTOMATIC1111
and ComfyUI keep it) loads through diffusers' from_single_file and generates the same images as the
diffusers directory it was written from."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from prefalign.cli.main import main


@pytest.fixture()
def single_file(tmp_path, tiny_sd, monkeypatch):
    """tiny_sd as model.safetensors, its configs in a hub cache as a first online run leaves them."""
    import huggingface_hub.constants

    from prefalign.testing.single_file import cache_configs_as_hub_repo, save_single_file_checkpoint

    cache = tmp_path / "hub-cache"
    cache_configs_as_hub_repo(tiny_sd, cache)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return save_single_file_checkpoint(tiny_sd, tmp_path / "model.safetensors")


def test_single_file_base_generates_the_directorys_images(tmp_path, tiny_sd, single_file):
    from prefalign.data import load_dataset

    (tmp_path / "prompts.txt").write_text("a red square\na blue circle\n")
    common = ["generate", "--prompts", str(tmp_path / "prompts.txt"), "--seeds", "0-1", "--steps", "3"]
    common += ["--device", "cpu", "--no-progress"]
    assert main([*common, "--base", str(tiny_sd), "--out", str(tmp_path / "from-dir")]) == 0
    assert main([*common, "--base", str(single_file), "--out", str(tmp_path / "from-file")]) == 0
    a, b = load_dataset(tmp_path / "from-dir"), load_dataset(tmp_path / "from-file")
    assert len(a) == len(b) == 4
    assert b[0].meta["base"] == str(single_file)
    for ra, rb in zip(a, b):
        assert (ra.prompt, ra.meta["seed"]) == (rb.prompt, rb.meta["seed"])
        x = np.asarray(Image.open(a.image_path(ra.images[0])))
        y = np.asarray(Image.open(b.image_path(rb.images[0])))
        assert np.array_equal(x, y)
    assert not np.array_equal(  # the images depend on the prompt: the comparison can fail
        np.asarray(Image.open(a.image_path(a[0].images[0]))),
        np.asarray(Image.open(a.image_path(a[2].images[0]))),
    )


def test_single_file_without_cached_configs_is_one_line(tmp_path, tiny_sd, monkeypatch, capsys):
    import huggingface_hub.constants

    from prefalign.testing.single_file import save_single_file_checkpoint

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = save_single_file_checkpoint(tiny_sd, tmp_path / "model.safetensors")
    (tmp_path / "p.txt").write_text("a red square\n")
    capsys.readouterr()  # what writing the checkpoint printed
    argv = [
        "generate",
        "--base",
        str(path),
        "--prompts",
        str(tmp_path / "p.txt"),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main([*argv, "--steps", "2", "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.safetensors: cannot load" in err[0] and "run once online" in err[0]


def test_single_file_missing_a_component_is_one_line(tmp_path, single_file, capsys):
    """diffusers' SingleFileComponentError (here: no text encoder in the file) is a clear error, not a traceback."""
    from safetensors.torch import load_file, save_file

    from prefalign.adapt.base_model import load_pipeline
    from prefalign.adapt.errors import AdaptError

    state = load_file(single_file)
    no_text = tmp_path / "unet-vae-only.safetensors"
    save_file({k: v for k, v in state.items() if not k.startswith("cond_stage_model.")}, no_text)
    with pytest.raises(AdaptError) as info:
        load_pipeline(no_text)
    assert "unet-vae-only.safetensors: cannot load" in str(info.value) and "\n" not in str(info.value)

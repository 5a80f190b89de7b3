"""Journey 4: the paper's LoRA recipe on my checkpoint, exported for AUTOMATIC1111 / ComfyUI (kohya)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from prefalign.cli.main import main
from prefalign.data import load_dataset


def test_select_train_export_kohya_and_generate_the_same_images(tmp_path, tiny_clip32, capsys):
    from prefalign.adapt.base_model import load_pipeline
    from prefalign.scoring import convert_checkpoint
    from prefalign.testing import make_choice_dataset
    from prefalign.testing.diffusion import save_tiny_sd

    base = save_tiny_sd(tmp_path / "sd")
    hps = convert_checkpoint("hf-clip", tiny_clip32, tmp_path / "hps", kind="hps")
    data = make_choice_dataset(tmp_path / "gens", 8, n_images=(2, 3), size=32, seed=0)

    selected, lora, kohya = tmp_path / "selected", tmp_path / "lora", tmp_path / "hps-lora.safetensors"
    assert main(["adapt", "select", "--data", str(data), "--model", str(hps), "--out", str(selected),
                 "--alpha", "1.0", "--device", "cpu", "--no-progress"]) == 0  # fmt: skip
    assert main(["adapt", "train-lora", "--data", str(selected), "--base", str(base), "--output_dir", str(lora),
                 "--max_steps", "2", "--per_device_train_batch_size", "2", "--resolution", "32", "--rank", "4",
                 "--learning-rate", "0.05", "--cpu"]) == 0  # fmt: skip
    assert main(["adapt", "export-lora", str(lora), "--format", "kohya", "--out", str(kohya)]) == 0
    assert (
        main(["adapt", "export-lora", str(lora), "--format", "kohya", "--out", str(kohya)]) == 2
    )  # no overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert all(k.startswith("lora_unet_") for k in load_file(kohya))

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n")
    gen = tmp_path / "gen"
    assert main(["generate", "--base", str(base), "--lora", str(lora), "--prompts", str(prompts), "--seeds", "3",
                 "--steps", "3", "--negative-prompt", "", "--out", str(gen), "--device", "cpu"]) == 0  # fmt: skip
    ours = load_dataset(gen)
    generated = np.asarray(Image.open(ours.image_path(ours[0].images[0])), dtype=np.int16)

    # What a diffusers (or UI) user does with the exported file: the same image
    pipe = load_pipeline(base)
    pipe.load_lora_weights(str(kohya))
    image = pipe(
        prompt=["a red circle"],
        num_inference_steps=3,
        guidance_scale=ours[0].meta["guidance"],
        height=32,
        width=32,
        generator=[torch.Generator().manual_seed(3)],
    ).images[0]
    assert np.abs(np.asarray(image, dtype=np.int16) - generated).max() <= 1

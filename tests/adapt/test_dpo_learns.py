"""Proof that Diffusion-DPO learns: a tiny SD taught to prefer brighter images makes brighter
images on held-out seeds than its base (sign test), its implicit accuracy rises from 0.5, and the
same run on the swapped pairs makes darker images (so the test cannot pass by accident).

The base (``save_brightness_sd``) has a VAE that carries brightness in latent channel 0 both ways
and a UNet pretrained for a few dozen steps to denoise grey images of random brightness: a random
VAE decodes nearly one brightness and a random UNet is no denoiser, so neither shows a learnt
preference (measured: 0.0023 std of brightness over 64 seeds, encode-decode correlation 0.02).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from scipy.stats import binomtest

from prefalign.adapt.dpo import DPOConfig, train_dpo
from prefalign.data import Record, save_dataset

PROMPTS = ("a cat", "a dog", "a red car", "a tree")
HELD_OUT_SEEDS = range(5000, 5032)  # never used for the training pairs (seeds 0-315)
SIZE = 16  # pixels: 8 x 8 latents


def _brightness(pipe, prompt: str, seeds) -> np.ndarray:
    """Images (NHWC in [0, 1]) and the mean pixel value of each; 4 PNDM steps, no guidance."""
    images = pipe(
        [prompt] * len(seeds),
        num_inference_steps=4,
        guidance_scale=1.0,
        height=SIZE,
        width=SIZE,
        generator=[torch.Generator().manual_seed(s) for s in seeds],
        output_type="np",
    ).images
    return images, images.mean(axis=(1, 2, 3))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The base and two pair sets drawn from it: brighter preferred, and the same pairs swapped."""
    from PIL import Image

    from prefalign.adapt.base_model import load_pipeline
    from prefalign.testing.diffusion import save_brightness_sd

    root = tmp_path_factory.mktemp("dpo-learns")
    base = save_brightness_sd(root / "base", steps=40)
    pipe = load_pipeline(base)
    records: dict[str, list[Record]] = {"brighter": [], "darker": []}
    (root / "images").mkdir()
    for i, prompt in enumerate(PROMPTS):
        images, light = _brightness(pipe, prompt, range(100 * i, 100 * i + 16))
        for k in range(0, 16, 2):
            for j in (k, k + 1):  # one image folder beside both datasets
                Image.fromarray((images[j] * 255).round().astype(np.uint8)).save(
                    root / "images" / f"{i}_{j}.png"
                )
            names = [f"../images/{i}_{j}.png" for j in (k, k + 1)]
            brighter = int(light[k + 1] > light[k])
            records["brighter"].append(Record(prompt=prompt, images=names, chosen=brighter))
            records["darker"].append(Record(prompt=prompt, images=names, chosen=1 - brighter))
    data = {}
    for name, recs in records.items():
        save_dataset(recs, root / name)
        data[name] = root / name
    base_light = {p: _brightness(pipe, p, HELD_OUT_SEEDS)[1] for p in PROMPTS[:2]}
    return base, data, base_light


def _train_and_compare(world, which: str, tmp_path):
    from prefalign.adapt.adapter import load_adapter
    from prefalign.adapt.base_model import load_pipeline

    base, data, base_light = world
    out = train_dpo(
        DPOConfig(
            data=str(data[which]),
            base=str(base),
            output_dir=str(tmp_path / which),
            max_steps=40,
            per_device_train_batch_size=8,
            gradient_accumulation_steps=1,
            resolution=SIZE,
            rank=4,
            learning_rate=5e-3,  # ours: the tiny model's; β stays the paper's 5000
            save_steps=0,
            logging_steps=1,
            cpu=True,
        )
    )
    pipe = load_pipeline(base)
    load_adapter(pipe, out)
    diffs = np.concatenate([_brightness(pipe, p, HELD_OUT_SEEDS)[1] - base_light[p] for p in PROMPTS[:2]])
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    accuracy = [r["implicit_accuracy"] for r in log]
    return diffs, accuracy[0], float(np.mean(accuracy[-10:]))


def _sign_test(diffs: np.ndarray, alternative: str) -> tuple[int, int, int, float]:
    up, down = int((diffs > 0).sum()), int((diffs < 0).sum())
    p = binomtest(up if alternative == "greater" else down, up + down, 0.5, alternative="greater").pvalue
    return up, down, len(diffs), float(p)


@pytest.mark.parametrize(("which", "alternative"), [("brighter", "greater"), ("darker", "less")])
def test_dpo_learns_the_preferred_property(world, which, alternative, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    diffs, acc_first, acc_last = _train_and_compare(world, which, tmp_path)
    up, down, n, p = _sign_test(diffs, alternative)
    figures = (
        f"preferred {which}: DPO brighter than base on {up}, darker on {down} of {n} held-out "
        f"(prompt, seed); one-sided sign test p = {p:.3g}; mean brightness change {diffs.mean():+.4f}; "
        f"implicit accuracy {acc_first:.3f} at step 1, {acc_last:.3f} over the last 10 steps"
    )
    print(figures)
    assert p < 0.01, figures
    assert acc_first == 0.5 and acc_last > 0.6, figures


def test_brightness_vae_carries_brightness_both_ways():
    """Latent channel 0 = gain x the 2x2-pooled luminance; decoding gives it back as grey pixels."""
    import torch.nn.functional as F

    from prefalign.testing.diffusion import BRIGHTNESS_GAIN, tiny_sd_components

    vae = tiny_sd_components(vae="brightness")["vae"]
    pixels = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    pooled = F.avg_pool2d(pixels.mean(1, keepdim=True), 2)
    with torch.no_grad():
        posterior = vae.encode(pixels).latent_dist
        decoded = vae.decode(posterior.mean).sample
    latents = posterior.mean * vae.config.scaling_factor
    assert torch.allclose(latents[:, :1], BRIGHTNESS_GAIN * pooled, atol=1e-5)
    assert latents[:, 1:].abs().max() == 0 and posterior.std.max() < 1e-4
    grey = F.interpolate(pooled, scale_factor=2).expand(-1, 3, -1, -1)
    assert torch.allclose(decoded, grey, atol=1e-4)
    # a random VAE of the same architecture does not: its decoded brightness ignores the input's
    random_vae = tiny_sd_components()["vae"]
    with torch.no_grad():
        out = random_vae.decode(
            random_vae.encode(pixels + torch.tensor([-0.5, 0.0, 0.5]).view(3, 1, 1, 1)).latent_dist.mean
        ).sample
    assert not torch.allclose(
        out.mean((1, 2, 3)), (pixels.mean((1, 2, 3)) + torch.tensor([-0.5, 0.0, 0.5])), atol=0.1
    )

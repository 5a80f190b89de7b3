"""MPS: a random release in the original layout (a pickled whole module, read with the restricted
unpickler, or a state dict), converted, loaded and scored, agrees with ``reference_mps``."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from prefalign.scoring import ConversionError, convert_checkpoint, load_scorer
from prefalign.testing.clip import tiny_clip_model, tiny_clip_tokenizer

from . import reference_clip as rclip
from . import reference_mps as ref

PROMPTS = ("a photo of a red circle", "two cats on a blue square")
SIZE = 32
RTOL = 1e-4


class _Fn(nn.Module):  # Residual(fn) in the release
    def __init__(self, params: dict[str, torch.Tensor]):
        super().__init__()
        self.fn = nn.Module()
        for name, value in params.items():
            *path, leaf = name.split(".")
            module = self.fn
            for part in path:
                if not hasattr(module, part):
                    module.add_module(part, nn.Module())
                module = getattr(module, part)
            if leaf in ("bias", "inv_freq") and ("norm" in path or "rotary_emb" in path):
                module.register_buffer(leaf, value)
            else:
                module.register_parameter(leaf, nn.Parameter(value))


class FakeRelease(nn.Module):
    """Stands in for trainer.models.clip_model.CLIPModel: ``model`` (HF CLIP) + ``cross_model``."""

    def __init__(self, clip, cross_state):
        super().__init__()
        self.model = clip
        self.cross_model = nn.Module()
        self.cross_model.layers = nn.ModuleList()
        layers = 1 + max(int(k.split(".")[2]) for k in cross_state)
        for i in range(layers):
            pair = nn.ModuleList()
            for j in (0, 1):
                head = f"cross_model.layers.{i}.{j}.fn."
                pair.append(_Fn({k[len(head) :]: v for k, v in cross_state.items() if k.startswith(head)}))
            self.cross_model.layers.append(pair)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mps")
    clip = tiny_clip_model(seed=3, hidden_act="gelu")
    cross = ref.random_cross_state(clip.config.projection_dim, seed=4)
    whole = FakeRelease(clip, cross)
    torch.save(whole, tmp / "MPS_overall_checkpoint.pth")
    state = whole.state_dict()
    tok = tiny_clip_tokenizer()
    tok.save_pretrained(tmp / "tok")
    return tmp, state, tok


@pytest.fixture(scope="module")
def scorer(release):
    tmp, _, _ = release
    out = convert_checkpoint(
        "mps",
        tmp / "MPS_overall_checkpoint.pth",
        tmp / "out",
        tokenizer=tmp / "tok",
        vision_heads=2,
        text_heads=2,
    )
    return load_scorer(out, device="cpu")


def test_whole_module_pickle_is_refused_by_weights_only(release):
    tmp, _, _ = release
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp / "MPS_overall_checkpoint.pth", weights_only=True)


def test_scores_match_the_original(release, scorer):
    _, state, tok = release
    assert scorer.kind == "mps"
    images = rclip.random_images(2, (50, 87), seed=5) + rclip.random_images(1, SIZE, seed=6)
    px = rclip.pixels(images, "center-crop", SIZE)
    heads = 2  # tiny_clip_config: 2 heads on both towers (given to convert; real ViT-H: 16 and 16)
    for prompt in PROMPTS:
        expected = ref.scores(state, tok, px, prompt, vision_heads=heads, text_heads=heads, cross_heads=2)
        got = scorer.score(images, prompt)
        torch.testing.assert_close(got.double(), expected, rtol=RTOL, atol=RTOL * expected.abs().max().item())
    a, b = scorer.score(images, PROMPTS[0]), scorer.score(images, PROMPTS[1])
    assert (a - b).abs().max() > 1e-4


def test_state_dict_release_converts_the_same(release, scorer, tmp_path):
    tmp, state, _ = release
    torch.save(state, tmp_path / "mps.pt")
    other = load_scorer(
        convert_checkpoint(
            "mps", tmp_path / "mps.pt", tmp_path / "o", tokenizer=tmp / "tok", vision_heads=2, text_heads=2
        ),
        device="cpu",
    )
    images = rclip.random_images(2, SIZE, seed=7)
    torch.testing.assert_close(other.score(images, PROMPTS[0]), scorer.score(images, PROMPTS[0]))


def test_scores_do_not_depend_on_the_batch(scorer):
    """The original normalises the mask by a maximum over the batch; prefalign per prompt."""
    px = torch.rand(2, 3, SIZE, SIZE)
    together = scorer.score_pixels(px, list(PROMPTS)).detach()
    alone = torch.stack([scorer.score_pixels(px[i : i + 1], PROMPTS[i]).detach()[0] for i in range(2)])
    torch.testing.assert_close(together, alone)


def test_not_an_mps_checkpoint(tmp_path):
    torch.save({"foo": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(ConversionError, match="not the MPS layout"):
        convert_checkpoint("mps", tmp_path / "x.pt", tmp_path / "o")


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model": _Evil(marker)}, tmp_path / "evil.pth")
    with pytest.raises(ConversionError, match=r"evil\.pth: the pickled module holds no tensors"):
        convert_checkpoint("mps", tmp_path / "evil.pth", tmp_path / "o")
    assert not marker.exists()
    assert not (tmp_path / "o").exists()

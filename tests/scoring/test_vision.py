"""The pruned last block returns exactly what transformers' full forward pass returns."""

import pytest
import torch

from prefalign.scoring.vision import image_features
from prefalign.testing import tiny_clip_model


@pytest.mark.parametrize(("heads", "act"), [(2, "quick_gelu"), (4, "gelu"), (1, "quick_gelu")])
def test_class_token_pruning_matches_the_full_forward(heads, act):
    model = tiny_clip_model(seed=heads, heads=heads, hidden_act=act, layers=3)
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = model.get_image_features(pixel_values=pixels).pooler_output
        got = image_features(model, pixels)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_gradients_flow_like_the_full_forward():
    model = tiny_clip_model(seed=1)
    pixels = torch.randn(2, 3, 32, 32)
    image_features(model, pixels).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.vision_model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.get_image_features(pixel_values=pixels).pooler_output.sum().backward()
    for name, p in model.vision_model.named_parameters():
        if name in grads:
            torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-6)

"""The losses against values computed by hand."""

import math

import pytest
import torch

from prefalign.train.losses import (
    choice_accuracy,
    choice_logits,
    choice_loss,
    prompt_classification_loss,
    reward_loss,
)


def test_choice_logits_are_scaled_cosines():
    image = torch.tensor([[[3.0, 0.0], [1.0, 1.0]]])  # cos with [1, 0]: 1 and 1/sqrt(2)
    text = torch.tensor([[2.0, 0.0]])
    logits = choice_logits(image, text, torch.tensor(math.log(10.0)))
    assert torch.allclose(logits, torch.tensor([[10.0, 10.0 / math.sqrt(2.0)]]))


def test_choice_loss_masks_padding_and_averages_records():
    # Record 1: two images (the third is padding), chosen 0; record 2: three equal logits, chosen 2.
    logits = torch.tensor([[2.0, 0.0, 99.0], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    chosen = torch.tensor([0, 2])
    expected = (math.log(1.0 + math.exp(-2.0)) + math.log(3.0)) / 2.0
    assert choice_loss(logits, mask, chosen).item() == pytest.approx(expected, rel=1e-6)
    assert choice_accuracy(logits, mask, chosen).tolist() == [True, False]


def test_choice_loss_ignores_dropped_records_and_stays_finite():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[True, True], [False, False]])  # record 2 failed to load
    valid = torch.tensor([True, False])
    loss = choice_loss(logits, mask, torch.tensor([0, 0]), valid)
    assert loss.item() == pytest.approx(math.log(1.0 + math.exp(-2.0)), rel=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[1].abs().sum() == 0

    none_valid = choice_loss(logits, mask, torch.tensor([0, 0]), torch.tensor([False, False]))
    assert none_valid.item() == 0.0 and none_valid.requires_grad


def test_reward_loss_is_mse_plus_weighted_prompt_classification():
    rewards = torch.tensor([[0.8, 0.2, 0.5], [0.3, 0.9, 0.0]])
    prompt_mask = torch.tensor([[True, True, True], [True, True, False]])
    labels = torch.tensor([1.0, 0.0])
    mse = ((1.0 - 0.8) ** 2 + (0.0 - 0.3) ** 2) / 2.0
    # Only the good image enters the auxiliary loss: -log softmax(r / T)[0] with T = 2.
    aux = -math.log(math.exp(0.4) / (math.exp(0.4) + math.exp(0.1) + math.exp(0.25)))
    loss, got_mse, got_aux = reward_loss(rewards, prompt_mask, labels, temperature=2.0, aux_weight=0.5)
    assert got_mse.item() == pytest.approx(mse, rel=1e-6)
    assert got_aux.item() == pytest.approx(aux, rel=1e-6)
    assert loss.item() == pytest.approx(mse + 0.5 * aux, rel=1e-6)


def test_prompt_classification_skips_bad_images_and_images_without_perturbations():
    rewards = torch.tensor([[0.9, 0.1], [0.7, 0.0]], requires_grad=True)
    mask = torch.tensor([[True, True], [True, False]])
    good = torch.tensor([False, True])  # the bad one has perturbations, the good one has none
    aux = prompt_classification_loss(rewards, mask, good, temperature=2.0)
    assert aux.item() == 0.0
    aux.backward()  # still part of the graph
    assert rewards.grad is not None

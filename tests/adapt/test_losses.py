"""The reward-weighted loss against a hand computation on fixed tensors."""

from __future__ import annotations

import pytest
import torch

from prefalign.adapt.losses import per_sample_mse, reward_weighted_loss


def test_per_sample_mse_averages_over_non_batch_dims():
    target = torch.zeros(2, 1, 2, 2)
    prediction = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]], [[[2.0, 0.0], [0.0, 0.0]]]])
    assert per_sample_mse(prediction, target).tolist() == [1.0, 1.0]


def test_reward_weighted_loss_equals_hand_computed_weighted_mse():
    eps = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, -1.0]])
    eps_theta = torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, 1.0]])
    # per-sample mean squared errors: (1 + 4) / 2 = 2.5, (1 + 1) / 2 = 1, (0 + 4) / 2 = 2
    rewards = torch.tensor([1.0, 0.0, 0.5])
    prior_eps = torch.tensor([[2.0, 0.0]])
    prior_pred = torch.tensor([[0.0, 0.0]])  # error (4 + 0) / 2 = 2
    beta = 0.25
    expected = (1.0 * 2.5 + 0.0 * 1.0 + 0.5 * 2.0) / 3 + beta * 2.0
    loss = reward_weighted_loss(
        per_sample_mse(eps_theta, eps), rewards, per_sample_mse(prior_pred, prior_eps), beta
    )
    assert loss.item() == pytest.approx(expected)


def test_unit_rewards_without_prior_is_the_plain_mse():
    a, b = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8)
    loss = reward_weighted_loss(per_sample_mse(a, b), torch.ones(4))
    assert loss.item() == pytest.approx(torch.nn.functional.mse_loss(a, b).item(), rel=1e-6)


def test_beta_zero_ignores_the_prior_term():
    mse = torch.tensor([1.0, 3.0])
    assert reward_weighted_loss(mse, torch.ones(2), torch.tensor([100.0]), 0.0).item() == 2.0


def test_gradient_flows_only_through_weighted_samples():
    pred = torch.zeros(2, 3, requires_grad=True)
    reward_weighted_loss(per_sample_mse(pred, torch.ones(2, 3)), torch.tensor([0.0, 1.0])).backward()
    assert torch.all(pred.grad[0] == 0) and torch.all(pred.grad[1] != 0)

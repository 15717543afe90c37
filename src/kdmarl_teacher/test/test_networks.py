"""Actor/critic shapes, invalid-action masking, orthogonal init, optional GRU."""

import torch
from kdmarl_teacher.core.networks import MASKED_LOGIT, Actor, Critic, actor_input, actor_inputs_all, critic_inputs_all


def test_actor_critic_shapes_mlp() -> None:
    torch.manual_seed(0)
    actor = Actor(18, 3, [5, 5, 5], [32, 32])
    critic = Critic(54, 3, [32, 32])
    obs = torch.randn(7, 3, 18)  # [B, N, obs_dim_max]
    x = actor_inputs_all(obs)
    assert x.shape == (7, 3, 21)
    assert torch.equal(x[..., 18:], torch.eye(3).expand(7, 3, 3))
    assert actor(x).shape == (7, 3, 5)
    assert actor.embed(x).shape == (7, 3, 32)
    c = critic_inputs_all(torch.randn(7, 54), 3)
    assert c.shape == (7, 3, 57)
    assert critic(c).shape == (7, 3)
    timed = Critic(54, 3, [32, 32], time_feature=True)
    ct = critic_inputs_all(torch.randn(7, 54), 3, torch.full((7,), 0.5))
    assert ct.shape == (7, 3, 58) and torch.all(ct[..., -1] == 0.5)
    assert timed(ct).shape == (7, 3)
    # actor_input for explicit agent ids == the batched helper
    ids = torch.tensor([0, 1, 2])
    assert torch.equal(actor_input(obs[0], ids, 3), x[0])


def test_invalid_actions_masked_per_agent() -> None:
    """speaker (3 actions) and listener (5): the speaker's logits 3 and 4 can never be chosen."""
    torch.manual_seed(0)
    actor = Actor(11, 2, [3, 5], [16])
    obs = torch.randn(100, 2, 11) * 10
    logits = actor(actor_inputs_all(obs))  # [100, 2, 5]
    assert torch.all(logits[:, 0, 3:] == MASKED_LOGIT)
    assert torch.all(logits[:, 1] > MASKED_LOGIT)
    probs = torch.softmax(logits, -1)
    assert torch.all(probs[:, 0, 3:] == 0)
    logp = torch.log_softmax(logits, -1)
    entropy = -(probs * logp).sum(-1)
    assert torch.isfinite(entropy).all()
    assert torch.all(entropy[:, 0] <= torch.log(torch.tensor(3.0)) + 1e-5)


def test_orthogonal_init_small_policy_head() -> None:
    """Policy head gain 0.01: the initial policy is close to uniform (CleanRL / MAPPO)."""
    torch.manual_seed(0)
    actor = Actor(18, 3, [5, 5, 5], [64, 64])
    w = actor.trunk[1].weight  # first Linear after the input LayerNorm
    q = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    assert torch.allclose(q, 2.0 * torch.eye(q.shape[0]), atol=1e-4)  # orthogonal with gain sqrt(2)
    probs = torch.softmax(actor(actor_inputs_all(torch.randn(50, 3, 18))), -1)
    assert torch.allclose(probs, torch.full_like(probs, 0.2), atol=0.05)


def test_gru_step_and_forward() -> None:
    torch.manual_seed(0)
    actor = Actor(11, 2, [3, 5], [16], use_gru=True, gru_hidden=8)
    critic = Critic(14, 2, [16], use_gru=True, gru_hidden=8)
    assert actor.recurrent and critic.recurrent
    x = actor_inputs_all(torch.randn(4, 2, 11)).reshape(8, -1)
    h = actor.initial_state(8)
    logits, z, h2 = actor.step(x, h)
    assert logits.shape == (8, 5) and z.shape == (8, 8) and h2.shape == (8, 8)
    assert not torch.equal(h2, h)
    assert torch.equal(actor(x), logits)  # forward = one step from the zero state
    v, hc = critic.step(critic_inputs_all(torch.randn(4, 14), 2).reshape(8, -1), critic.initial_state(8))
    assert v.shape == (8,) and hc.shape == (8, 8)

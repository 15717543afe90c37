"""Each KD-MARL term is zero (or minimal) when the student reproduces the teacher and positive otherwise."""

import pytest
import torch
from kdmarl_teacher.core import losses
from kdmarl_teacher.distill.roles import AuxHeads, assign_roles, fit_roles, kmeans
from kdmarl_teacher.distill.students import StudentMLP

torch.manual_seed(0)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_kl_zero_iff_equal(temperature: float) -> None:
    t = torch.randn(64, 5)
    assert losses.kd_kl_loss(t, t.clone(), temperature).abs() < 1e-6
    assert losses.kd_kl_loss(t, torch.randn(64, 5), temperature) > 1e-3
    # T² scaling: for small logit differences the loss is ~independent of T (gradients keep their scale).
    s = t + 0.01 * torch.randn(64, 5)
    ratio = losses.kd_kl_loss(t, s, 4.0) / losses.kd_kl_loss(t, s, 1.0)
    assert 0.3 < ratio < 1.5


def test_kl_with_masked_teacher_logits() -> None:
    t = torch.randn(8, 5)
    t[:, 3:] = -1e8  # speaker: invalid actions masked by the teacher actor
    assert losses.kd_kl_loss(t, t.clone(), 2.0).abs() < 1e-6
    assert torch.isfinite(losses.kd_kl_loss(t, torch.randn(8, 5), 2.0))


def test_argmax_ce_minimal_when_student_matches_sharp_teacher() -> None:
    t = torch.randn(64, 5) + 50.0 * torch.nn.functional.one_hot(torch.randint(0, 5, (64,)), 5)  # near-deterministic
    assert losses.argmax_ce_loss(t, t.clone()) < 1e-3
    wrong = t.clone()
    wrong[torch.arange(64), t.argmax(-1)] = -100.0
    assert losses.argmax_ce_loss(t, wrong) > 1.0
    soft = torch.randn(64, 5)
    # The minimum is at the argmax one-hot.
    assert losses.argmax_ce_loss(soft, soft) > losses.argmax_ce_loss(soft, soft * 10)


def test_relation_zero_iff_same_structure_and_accepts_different_widths() -> None:
    M, N = 32, 3
    teacher_emb = torch.randn(M, N, 128)
    t_rel = losses.relation_matrix(teacher_emb)
    assert t_rel.shape == (M, N, N)
    torch.testing.assert_close(torch.diagonal(t_rel, dim1=1, dim2=2), torch.ones(M, N))
    assert losses.relation_loss(t_rel, losses.relation_matrix(teacher_emb.clone())) < 1e-10
    # Scaling an agent's embedding does not change cosine structure.
    scaled = teacher_emb * torch.tensor([1.0, 3.0, 0.5])[None, :, None]
    assert losses.relation_loss(t_rel, losses.relation_matrix(scaled)) < 1e-10
    # Students of different widths (8, 16, 64) through their training-only projections: finite, positive, and
    # the gradient reaches every student.
    students = [StudentMLP(10, (8,), 5), StudentMLP(14, (16, 16), 5), StudentMLP(18, (64, 64), 5)]
    heads = AuxHeads([8, 16, 64], n_roles=4, rel_dim=32)
    xs = [torch.randn(M, s.in_dim) for s in students]
    projected = [heads.relation[i](s.embed(x)) for i, (s, x) in enumerate(zip(students, xs, strict=True))]
    loss = losses.relation_loss(t_rel, losses.relation_matrix(projected))
    assert loss > 1e-3
    loss.backward()
    assert all(s.body[0].weight.grad.abs().sum() > 0 for s in students)
    with pytest.raises(ValueError, match="common embedding width"):
        losses.relation_matrix([torch.randn(M, 8), torch.randn(M, 16)])


def test_role_loss_and_kmeans() -> None:
    # Three well-separated clusters of "teacher embeddings" are recovered exactly.
    centers = torch.eye(3, 16) * 5
    x = torch.cat([centers[k] + 0.1 * torch.randn(50, 16) for k in range(3)])
    c = kmeans(x, 3, seed=1)
    labels = torch.cdist(x, c).argmin(1)
    assert all(len(set(labels[k * 50:(k + 1) * 50].tolist())) == 1 for k in range(3))
    assert len(set(labels.tolist())) == 3
    roles = assign_roles(x.reshape(30, 5, 16), fit_roles(x, 3))
    assert roles.shape == (30, 5)
    targets = torch.randint(0, 4, (64,))
    perfect = torch.nn.functional.one_hot(targets, 4).float() * 50.0
    assert losses.role_loss(perfect, targets) < 1e-6
    assert losses.role_loss(-perfect, targets) > 1.0


def test_clipped_pg() -> None:
    logp = torch.log(torch.rand(128).clamp_min(0.05))
    adv = torch.randn(128)
    adv = (adv - adv.mean()) / adv.std()
    assert losses.clipped_pg_loss(logp, logp, adv).abs() < 1e-6  # the behaviour policy itself, normalized advantages
    # The gradient raises log-probs with positive advantage and lowers the others.
    new = logp.clone().requires_grad_(True)
    losses.clipped_pg_loss(new, logp, adv).backward()
    assert torch.all(torch.sign(-new.grad) == torch.sign(adv))
    # Clipping: far beyond the trust region a positive-advantage sample stops pulling.
    far = (logp + 1.0).requires_grad_(True)
    losses.clipped_pg_loss(far, logp, adv.abs()).backward()
    assert far.grad.abs().max() == 0


def test_gae_matches_hand_computation() -> None:
    T, B, N = 3, 2, 1
    r = torch.tensor([1.0, 2.0, 3.0]).reshape(T, 1, 1).expand(T, B, N).clone()
    v = torch.zeros(T, B, N)
    dones = torch.zeros(T, B, dtype=torch.bool)
    dones[1, 1] = True  # env 1's episode ends after step 1
    adv, ret = losses.gae(r, v, torch.full((B, N), 10.0), dones, gamma=0.5, lam=1.0)
    expected = torch.tensor([1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 10, 2 + 1.5 + 2.5, 3 + 5.0])
    torch.testing.assert_close(adv[:, 0, 0], expected)
    torch.testing.assert_close(adv[:, 1, 0], torch.tensor([1 + 0.5 * 2, 2.0, 3 + 5.0]))
    torch.testing.assert_close(ret, adv + v)


def test_gae_lambda_and_values_hand_computed() -> None:
    # T=3, B=1, N=1, gamma 0.9, lambda 0.8; the episode ends with step 1, step 2 is cut (bootstrapped).
    rewards = torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1)
    values = torch.tensor([0.5, 1.0, 1.5]).view(3, 1, 1)
    dones = torch.tensor([False, True, False]).view(3, 1)
    next_value = torch.tensor([[2.0]])
    adv, ret = losses.gae(rewards, values, next_value, dones, gamma=0.9, lam=0.8)
    # t=2: 3 + 0.9*2.0 - 1.5 = 3.3;  t=1 (terminal): 2 - 1.0 = 1.0;  t=0: (1 + 0.9*1.0 - 0.5) + 0.9*0.8*1.0 = 2.12
    assert torch.allclose(adv.view(-1), torch.tensor([2.12, 1.0, 3.3]))
    assert torch.allclose(ret.view(-1), torch.tensor([2.62, 2.0, 4.8]))


def test_entropy_bounds() -> None:
    assert abs(losses.entropy(torch.zeros(4, 5)) - torch.log(torch.tensor(5.0))) < 1e-6
    assert losses.entropy(torch.tensor([[100.0, 0, 0]])) < 1e-6

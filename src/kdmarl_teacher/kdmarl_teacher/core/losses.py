"""KD-MARL loss terms, each a pure function with explicit shapes (DESIGN.md §4).

M is a batch of (timestep, environment) samples, N the number of agents, A an agent's action count,
H a hidden width (teacher's and each student's may differ). Every term returns a scalar (mean over M) and
is zero — or at its minimum — when the student reproduces the teacher; the distillation recipes weigh and switch
them from the config.

- ``gae``: advantages from the frozen teacher critic's values on the global state (students have no critic).
- ``clipped_pg_loss``: PPO's clipped surrogate with those advantages (teacher-guided policy gradient).
- ``kd_kl_loss``: T² · KL(teacher ‖ student) on temperature-softened distributions (Hinton et al. 2015).
- ``argmax_ce_loss``: cross-entropy of the student against the teacher's most probable action.
- ``relation_matrix`` / ``relation_loss``: per-timestep N×N cosine-similarity matrices of the agents' last-hidden
  embeddings, teacher vs student; only the N×N matrices are compared, so widths may differ per agent (each
  student's embedding goes through its own training-only linear projection to a common width first).
- ``role_loss``: cross-entropy of a (training-only) role head on the student embedding against the role
  the teacher's embedding was assigned (``roles.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def gae(
    rewards: torch.Tensor, values: torch.Tensor, next_value: torch.Tensor, dones: torch.Tensor,
    *, gamma: float = 0.99, lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over a rollout.

    rewards [T, B, N], values [T, B, N] (teacher critic, denormalized, of the state at t), next_value [B, N]
    (of the state after the last step), dones bool [T, B] (True if the episode ended at step t: the state at
    t+1 belongs to a new episode, so no bootstrap across it; MPE episodes end by time limit, and the teacher was
    trained the same way). Returns (advantages [T, B, N], returns [T, B, N]).
    """
    T = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(T)):
        nv = next_value if t == T - 1 else values[t + 1]
        nonterminal = (~dones[t]).to(rewards.dtype).unsqueeze(-1)  # [B, 1]
        delta = rewards[t] + gamma * nv * nonterminal - values[t]
        last = delta + gamma * lam * nonterminal * last
        adv[t] = last
    return adv, adv + values


def clipped_pg_loss(
    logp_new: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, clip: float = 0.2,
) -> torch.Tensor:
    """PPO clipped surrogate, as a loss to minimize. logp_new/logp_old/advantages [M] -> scalar.

    With the behaviour policy itself (ratio 1) and normalized advantages (mean 0) it is 0; its gradient raises
    the log-probability of actions the teacher critic rates above its own value.
    """
    ratio = torch.exp(logp_new - logp_old)  # [M]
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages)
    return -surrogate.mean()


def kd_kl_loss(teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)); logits [M, A] -> scalar (mean over M). 0 iff the
    softened distributions are equal. The T² keeps gradient magnitudes comparable across temperatures."""
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=-1)  # [M, A]
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)  # [M, A]
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)  # [M]
    return temperature**2 * kl.mean()


def argmax_ce_loss(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the student against the teacher's argmax action; logits [M, A] -> scalar.
    Minimal (→ 0) when the student puts all its mass on the teacher's choice."""
    return F.cross_entropy(student_logits, teacher_logits.argmax(-1))


def relation_matrix(embeddings: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """Per-sample N×N cosine similarities between agents' embeddings.

    embeddings: one tensor [M, N, D] or a list of N tensors [M, D] in a common space. Students of different
    widths H_i are first mapped to that space by their training-only projection heads (``roles.AuxHeads``):
    cosines between raw vectors of two unrelated networks would mean nothing. Returns [M, N, N].
    """
    if not isinstance(embeddings, torch.Tensor):
        widths = {e.shape[-1] for e in embeddings}
        if len(widths) != 1:
            raise ValueError(f"relation_matrix needs a common embedding width, got {sorted(widths)}: "
                             "project each agent's embedding first")
        embeddings = torch.stack(list(embeddings), dim=1)  # [M, N, D]
    z = F.normalize(embeddings, dim=-1, eps=1e-8)  # [M, N, D]
    return z @ z.transpose(1, 2)  # [M, N, N]


def relation_loss(teacher_rel: torch.Tensor, student_rel: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the off-diagonal entries of the N×N relation matrices [M, N, N] -> scalar."""
    N = teacher_rel.shape[-1]
    if N < 2:
        return teacher_rel.new_zeros(())
    off = ~torch.eye(N, dtype=torch.bool, device=teacher_rel.device)  # [N, N]
    return ((teacher_rel - student_rel)[:, off] ** 2).mean()


def role_loss(role_logits: torch.Tensor, role_targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of role-head logits [M, R] against teacher-derived roles long [M] -> scalar."""
    return F.cross_entropy(role_logits, role_targets)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean entropy of categorical distributions; logits [M, A] -> scalar."""
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1).mean()

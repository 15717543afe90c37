"""Roles from the teacher, and the training-only heads that students carry during distillation.

Roles: the teacher's last-hidden embeddings of (state, agent) pairs are clustered with k-means (unit-normalized
embeddings, k-means++ seeding, Lloyd iterations; 20 lines of torch instead of a dependency). A sample's role is
its nearest centroid, so roles are *dynamic* (in simple_spread they tend to follow which landmark an agent is
heading for; in speaker-listener they separate the two agents first). The role-alignment term asks each
student's embedding to stay identifiable as the role the teacher was in at that state, so students' latent
roles do not collapse onto each other.

``AuxHeads`` holds, per student, a role head (H_i -> K logits) and a relation projection (H_i -> D) that maps
students of different widths to a common space for the structural-relation term. Both exist only during
training: ``students.pt`` keeps them apart from the students and the bundle export never sees them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def kmeans(x: torch.Tensor, k: int, iters: int = 30, seed: int = 0) -> torch.Tensor:
    """k-means on x [M, D] -> centroids [k, D] (k-means++ seeding, Lloyd's iterations, fixed seed)."""
    M = x.shape[0]
    if not 1 <= k <= M:
        raise ValueError(f"kmeans: need 1 <= k <= number of samples, got k={k}, M={M}")
    g = torch.Generator(device="cpu").manual_seed(seed)
    centroids = x[torch.randint(M, (1,), generator=g)]  # [1, D]
    for _ in range(1, k):  # k-means++: next centroid drawn proportionally to squared distance
        d2 = torch.cdist(x, centroids).min(dim=1).values.pow(2)  # [M]
        probs = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1.0 / M)
        centroids = torch.cat([centroids, x[torch.multinomial(probs.cpu(), 1, generator=g)]])
    for _ in range(iters):
        labels = torch.cdist(x, centroids).argmin(dim=1)  # [M]
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)  # [k, D]
        counts = torch.bincount(labels, minlength=k).to(x.dtype).unsqueeze(1)  # [k, 1]
        # An empty cluster keeps its old centroid (rare with k-means++ seeding).
        new = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
        if torch.allclose(new, centroids):
            break
        centroids = new
    return centroids


def assign_roles(embeddings: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Nearest centroid of each unit-normalized embedding: [..., D] -> long [...]."""
    z = F.normalize(embeddings, dim=-1)
    flat = z.reshape(-1, z.shape[-1])
    return torch.cdist(flat, centroids).argmin(dim=1).reshape(z.shape[:-1])


def fit_roles(teacher_embeddings: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """Centroids [k, D] of unit-normalized teacher embeddings [..., D] (all agents and samples pooled)."""
    z = F.normalize(teacher_embeddings.reshape(-1, teacher_embeddings.shape[-1]), dim=-1)
    return kmeans(z, k, seed=seed)


class AuxHeads(nn.Module):
    """Training-only heads per student: role logits (H_i -> n_roles) and relation projection (H_i -> rel_dim)."""

    def __init__(self, widths: Sequence[int], n_roles: int, rel_dim: int) -> None:
        super().__init__()
        self.role = nn.ModuleList(nn.Linear(w, n_roles) for w in widths)
        self.relation = nn.ModuleList(nn.Linear(w, rel_dim, bias=False) for w in widths)

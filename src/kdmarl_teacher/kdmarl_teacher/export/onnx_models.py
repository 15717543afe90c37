"""The ONNX side of export: what is exported per agent (`ExportAgent`: a student, or the teacher's shared actor
with its one-hot baked in), and the ONNX file itself (opset 18, `observation` -> `logits`, a recurrent student's
`h_in` -> `h_out`, checker-clean)."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import torch
from kdmarl_student.scenarios import ScenarioSpec
from kdmarl_student.sensing import history_dim
from torch import nn

from kdmarl_teacher.core.resources import module_resources
from kdmarl_teacher.distill.students_file import student_agents

LOGGER = logging.getLogger("kdmarl.export")


OPSET = 18


INPUT_NAME = "observation"


OUTPUT_NAME = "logits"


STATE_INPUT = "h_in"  # a recurrent student's state in and out (issue 11)


STATE_OUTPUT = "h_out"


@dataclass
class ExportAgent:
    """One agent's deployable policy, as the exporter needs it.

    Attributes:
        name: mpe2 agent name (``agent_0``, ``speaker_0``, ...).
        module: torch module, sensed observation ``[B, input_dim]`` -> logits ``[B, n_actions]``; it must
            be exportable by ``torch.onnx.export`` (plain MLPs are).
        sensing: the agent's sensing profile (``kdmarl_student.sensing`` vocabulary); ``{"slices": "all"}``
            for the full observation.
        kind: ``"student"`` (distilled) or ``"teacher_actor"`` (the teacher's actor standing in).
        budget: the hardware profile the model was built for (``name``, ``max_flops``, ``max_params``,
            ``max_memory_bytes``, ``max_latency_ms``, ``control_rate_hz``) or ``None``.
        resources: ``{"params", "flops_per_decision", "memory_bytes"}``; computed from the module's
            ``nn.Linear`` chain (``kdmarl_teacher.core.resources``) when ``None``.
        architecture: a short human description for the manifest (``"mlp[32, 32] tanh"``).
    """

    name: str
    module: nn.Module
    sensing: dict[str, Any] = field(default_factory=lambda: {"slices": "all"})
    kind: str = "student"
    budget: dict[str, Any] | None = None
    resources: dict[str, int] | None = None
    architecture: str = ""

    @property
    def state_dim(self) -> int:
        """A recurrent module's hidden size (its ONNX graph takes and gives the state); 0 otherwise."""
        return int(getattr(self.module, "state_dim", 0)) if getattr(self.module, "recurrent", False) else 0

    def memory(self, layout: dict) -> dict[str, Any] | None:
        """The manifest's ``memory`` entry: what the robot keeps between decisions (None: stateless)."""
        if self.state_dim:
            return {"kind": "recurrent", "state_dim": self.state_dim, "state_input": STATE_INPUT,
                    "state_output": STATE_OUTPUT}
        width = history_dim(layout, self.sensing)
        return {"kind": "history", "state_dim": width} if width else None


class TeacherAgentActor(nn.Module):
    """The teacher's shared actor seen from one agent: own observation in, own logits out.

    Pads the observation to ``obs_dim_max``, appends the agent's one-hot as a constant buffer and keeps the
    agent's first ``n_actions`` logits (the others are masked for this agent anyway). The exported graph
    therefore needs nothing but the observation the environment publishes for this agent.
    """

    def __init__(self, actor: nn.Module, agent_index: int, obs_dim: int, n_actions: int) -> None:
        super().__init__()
        self.actor = actor
        self.obs_dim = int(obs_dim)
        self.n_actions = int(n_actions)
        self.pad = int(actor.obs_dim_max) - self.obs_dim
        onehot = torch.zeros(1, int(actor.n_agents))
        onehot[0, agent_index] = 1.0
        self.register_buffer("onehot", onehot)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        batch = obs.shape[0]
        parts = [obs]
        if self.pad:
            parts.append(obs.new_zeros(batch, self.pad))
        parts.append(self.onehot.expand(batch, -1))
        return self.actor(torch.cat(parts, dim=-1))[:, : self.n_actions]


def linear_chain_resources(module: nn.Module) -> dict[str, int]:
    """FLOPs / params / memory of a module's ``nn.Linear`` layers, per ``kdmarl_teacher.core.resources``.

    Uses the shared accounting (Linear chain: 2 x MACs, weights + activation buffers); a module whose
    Linear layers do not form one chain (e.g. a recurrent actor) is counted layer by layer instead.
    """
    target = module.actor if isinstance(module, TeacherAgentActor) else module
    try:
        res = module_resources(target)
        return {"params": res.params, "flops_per_decision": res.flops, "memory_bytes": res.memory_bytes}
    except ValueError:
        linears = [m for m in target.modules() if isinstance(m, nn.Linear)]
        macs = sum(m.in_features * m.out_features for m in linears)
        params = sum(p.numel() for p in target.parameters())
        activations = sum(m.out_features for m in linears) + (linears[0].in_features if linears else 0)
        return {"params": params, "flops_per_decision": 2 * macs, "memory_bytes": 4 * (params + activations)}


def teacher_export_agents(teacher: Any) -> list[ExportAgent]:
    """Every agent gets the teacher's shared actor (one-hot baked in): a bundle before students exist."""
    spec: ScenarioSpec = teacher.spec
    hidden = [m.out_features for m in teacher.actor.modules() if isinstance(m, nn.Linear)][:-1]
    agents = []
    for i, agent in enumerate(spec.agents):
        module = TeacherAgentActor(teacher.actor, i, agent.obs_dim, agent.n_actions).eval()
        agents.append(ExportAgent(name=agent.name, module=module, sensing={"slices": "all"}, kind="teacher_actor",
                                  architecture=f"teacher actor mlp{hidden} (shared, one-hot {i})"))
    return agents


def load_student_agents(path: str | Path) -> list[ExportAgent]:
    """Distilled students from ``students.pt`` (format and version: ``kdmarl_teacher.students_file``)."""
    return [ExportAgent(name=a.name, module=a.module, sensing=a.sensing, kind="student", budget=a.budget,
                        resources=a.resources, architecture=a.architecture) for a in student_agents(path)]


def export_onnx(module: nn.Module, path: Path, input_dim: int, *, state_dim: int = 0, opset: int = OPSET,
                dynamo: bool = True) -> None:
    """Export ``module`` with a dynamic batch axis and check the result with ``onnx.checker``.

    With ``state_dim`` the module is one recurrent step, ``(observation, h_in) -> (logits, h_out)``, and the
    graph has those two inputs and outputs (explicit state: the robot's runtime owns it). ``dynamo=True`` uses
    torch's current exporter (``torch.export`` + onnxscript); ``False`` the legacy TorchScript one, kept for
    speed in tests and as a fallback. Both give the same graph for MLPs and GRU cells.
    """
    module = module.eval()
    example: tuple[torch.Tensor, ...] = (torch.zeros(2, input_dim),)
    inputs, outputs = [INPUT_NAME], [OUTPUT_NAME]
    if state_dim:
        example += (torch.zeros(2, state_dim),)
        inputs, outputs = [INPUT_NAME, STATE_INPUT], [OUTPUT_NAME, STATE_OUTPUT]
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim("batch")
            onnx_program = torch.onnx.export(
                module, example, input_names=inputs, output_names=outputs, opset_version=opset,
                dynamic_shapes=tuple({0: batch} for _ in example), dynamo=True, verbose=False,
            )
            onnx_program.save(str(path))
        else:
            torch.onnx.export(
                module, example, str(path), input_names=inputs, output_names=outputs, opset_version=opset,
                dynamic_axes={name: {0: "batch"} for name in (*inputs, *outputs)}, dynamo=False,
            )
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    for graph_input, width in zip(model.graph.input, (input_dim, state_dim), strict=False):
        dims = graph_input.type.tensor_type.shape.dim
        if len(dims) != 2 or not dims[0].dim_param or dims[1].dim_value != width:
            raise ValueError(f"{path}: exported input {graph_input.name!r} is not [batch, {width}] with a dynamic "
                             "batch axis")

"""Parity between torch and ONNX Runtime, the export's guarantee: random inputs (and states) per agent, and whole
episodes of the real environment stepped exactly as a robot steps them (state carried, history features,
resets), with identical greedy actions; non-finite weights are refused before anything is exported."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from kdmarl_student.bundle_eval import make_bundle_env
from kdmarl_student.policy import session_options
from kdmarl_student.scenarios import ScenarioSpec, is_smax
from kdmarl_student.sensing import apply_sensing
from torch import nn

from kdmarl_teacher.core.errors import NonFiniteError
from kdmarl_teacher.core.run_files import nonfinite_tensors
from kdmarl_teacher.export.onnx_models import INPUT_NAME, OUTPUT_NAME, STATE_INPUT, STATE_OUTPUT, ExportAgent


def cpu_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU session with the robot runtime's own options (so parity and latency describe what robots run)."""
    return ort.InferenceSession(str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"])


PARITY_RULE = "|onnx - torch| <= tolerance * max(1, max_j |torch_j|) for every logit of every observation"


def output_error(onnx_out: np.ndarray, torch_out: np.ndarray) -> tuple[float, float]:
    """(max |torch - ONNX|, the same scaled by max(1, largest |output| of that row)) of one batch [M, K].

    A NaN/Inf output on either side is an infinite difference: NaN compares False, so max() would skip it and
    a NaN model would read as parity 0.00."""
    finite = np.isfinite(onnx_out) & np.isfinite(torch_out)
    diff = np.full(onnx_out.shape, np.inf)
    diff[finite] = np.abs(onnx_out[finite] - torch_out[finite])
    scale = np.maximum(1.0, np.abs(np.where(finite, torch_out, 0.0)).max(axis=-1, keepdims=True))  # [M, 1]
    return float(diff.max()), float((diff / scale).max())


def parity_error(module: nn.Module, path: Path, inputs: np.ndarray, states: np.ndarray | None = None,
                 chunk: int = 4096) -> tuple[float, float]:
    """(max |torch - ONNX|, the same scaled by max(1, largest |logit| of that observation)) over ``inputs``
    (and, for a recurrent module, ``states`` [n, H]: both its outputs, logits and new state, are compared).

    The check uses the second figure: the float32 logits of a trained teacher on the outlier inputs of
    ``random_observations`` reach tens to hundreds, where 1e-5 absolute is below float32 resolution; for
    logits within ±1 it is the absolute bound.
    """
    session = cpu_session(path, threads=max(1, min(2, os.cpu_count() or 1)))
    worst_abs = worst_scaled = 0.0
    with torch.no_grad():
        for start in range(0, len(inputs), chunk):
            x = np.ascontiguousarray(inputs[start : start + chunk], dtype=np.float32)
            if states is None:
                pairs = [(session.run([OUTPUT_NAME], {INPUT_NAME: x})[0], module(torch.from_numpy(x)).numpy())]
            else:
                h = np.ascontiguousarray(states[start : start + chunk], dtype=np.float32)
                onnx_logits, onnx_h = session.run([OUTPUT_NAME, STATE_OUTPUT], {INPUT_NAME: x, STATE_INPUT: h})
                torch_logits, torch_h = module(torch.from_numpy(x), torch.from_numpy(h))
                pairs = [(onnx_logits, torch_logits.numpy()), (onnx_h, torch_h.numpy())]
            for onnx_out, torch_out in pairs:
                abs_err, scaled_err = output_error(onnx_out, torch_out)
                worst_abs, worst_scaled = max(worst_abs, abs_err), max(worst_scaled, scaled_err)
    return worst_abs, worst_scaled


def refuse_nonfinite_weights(agents: Sequence[ExportAgent], teacher_actor: nn.Module | None) -> None:
    """Refuse to export a model holding NaN/Inf weights (a diverged training run): its logits are NaN for every
    observation, which a robot must never get. NonFiniteError names the agent (or teacher actor) and parameters."""
    models = [(f"agent {a.name} ({a.kind})", a.module) for a in agents]
    models += [("teacher actor", teacher_actor)] if teacher_actor is not None else []
    for what, module in models:
        bad = nonfinite_tensors(module.state_dict().items())
        if bad:
            raise NonFiniteError(f"{what}: non-finite (NaN/Inf) weights in {', '.join(bad)}: refusing to export; "
                                 "expected the finite weights of a run that did not diverge")


class Stepper:
    """One agent's policy stepped through an episode the way the robot's runtime steps it: the sensing
    transform with the previous observation (history features), the recurrent state carried from decision
    to decision, both reset at an episode start. ``run(x [1, in], h [1, H]) -> (logits [1, A], h')`` is the
    torch module or its ONNX Runtime session, so the two can be stepped side by side."""

    def __init__(self, agent: ExportAgent, layout: dict, run: Any) -> None:
        self.agent, self.layout, self.run = agent, layout, run
        self.reset()

    def reset(self) -> None:
        self.previous: np.ndarray | None = None
        self.h = np.zeros((1, self.agent.state_dim), np.float32)

    def step(self, observation: np.ndarray) -> np.ndarray:
        obs = np.asarray(observation, dtype=np.float32)[None]
        x = np.ascontiguousarray(apply_sensing(obs, self.layout, self.agent.sensing, self.previous), dtype=np.float32)
        logits, self.h = self.run(x, self.h)
        self.previous = obs
        return logits[0]


def torch_runner(agent: ExportAgent) -> Any:
    def run(x: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            if agent.state_dim:
                logits, h_new = agent.module(torch.from_numpy(x), torch.from_numpy(h))
                return logits.numpy(), h_new.numpy()
            return agent.module(torch.from_numpy(x)).numpy(), h
    return run


def onnx_runner(agent: ExportAgent, path: Path) -> Any:
    session = cpu_session(path, threads=1)

    def run(x: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if agent.state_dim:
            logits, h_new = session.run([OUTPUT_NAME, STATE_OUTPUT], {INPUT_NAME: x, STATE_INPUT: h})
            return logits, h_new
        return session.run([OUTPUT_NAME], {INPUT_NAME: x})[0], h
    return run


def episode_parity(spec: ScenarioSpec, agents: Sequence[ExportAgent], paths: dict[str, Path], steps: int, *,
                   seed: int, epsilon: float = 0.2) -> dict[str, dict[str, Any]]:
    """Torch and ONNX Runtime stepped side by side through whole mpe2 episodes until every agent made
    ``steps`` decisions: per agent the worst logit difference (absolute and scaled, as ``parity_error``), the
    number of steps and of greedy actions that differ (which must be 0), and the episodes.

    Agents act greedily with their torch module, with probability ``epsilon`` uniformly at random (seeded),
    so the record is not a handful of repeated trajectories; both sides see the same observations.
    """
    env = make_bundle_env(spec)
    masked = is_smax(spec.name)  # SMAX: greedy and random actions among the available ones
    rng = np.random.default_rng(seed)
    layouts = {a.name: a.layout for a in spec.agents}
    n_actions = {a.name: a.n_actions for a in spec.agents}
    sides = {a.name: (Stepper(a, layouts[a.name], torch_runner(a)),
                      Stepper(a, layouts[a.name], onnx_runner(a, paths[a.name]))) for a in agents}
    out = {a.name: {"max_abs_diff": 0.0, "max_scaled_diff": 0.0, "steps": 0, "action_mismatches": 0} for a in agents}
    episode = 0
    while min(o["steps"] for o in out.values()) < steps:
        obs, _ = env.reset(seed=seed + episode)
        episode += 1
        for torch_side, onnx_side in sides.values():
            torch_side.reset()
            onnx_side.reset()
        while env.agents:
            actions = {}
            masks = env.available_actions() if masked else {}
            for name in env.agents:
                torch_side, onnx_side = sides[name]
                torch_logits, onnx_logits = torch_side.step(obs[name]), onnx_side.step(obs[name])
                abs_err, scaled_err = output_error(onnx_logits[None], torch_logits[None])
                rec = out[name]
                rec["max_abs_diff"], rec["max_scaled_diff"] = max(rec["max_abs_diff"], abs_err), max(
                    rec["max_scaled_diff"], scaled_err)
                rec["steps"] += 1
                if name in masks:  # the actions compared are the ones the runtime picks: among the available ones
                    torch_logits = np.where(masks[name], torch_logits, -np.inf)
                    onnx_logits = np.where(masks[name], onnx_logits, -np.inf)
                rec["action_mismatches"] += int(np.argmax(torch_logits) != np.argmax(onnx_logits))
                greedy = int(np.argmax(torch_logits))
                explore = rng.random() < epsilon
                if explore and name in masks:
                    greedy = int(rng.choice(np.flatnonzero(masks[name])))
                elif explore:
                    greedy = int(rng.integers(n_actions[name]))
                actions[name] = greedy
            obs, _, _, _, _ = env.step(actions)
    env.close()
    for rec in out.values():
        rec["episodes"] = episode
    return out


def random_observations(n: int, dim: int, seed: int, scale: float = 1.5) -> np.ndarray:
    """Random observations at the scenario's scale and beyond: normal with sd `scale` (MPE: 1.5, positions of a
    few units; SMAX's normalized features: 0.5; ``kdmarl_student.scenarios.observation_scale``), a tenth of
    them 10x larger (outliers). Float32 rounding grows with the inputs, so inputs far outside the scenario's
    range would test rounding, not the export."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, scale, (n, dim))
    x[: n // 10] *= 10.0
    return x.astype(np.float32)

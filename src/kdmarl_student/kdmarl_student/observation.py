"""Observation validation and sensing selection for the on-board runtime.

Every observation that reaches a robot's policy comes over a network from a simulator or an adapter, so
it is checked before inference: the right length, numeric, finite. A bad one raises
:class:`~kdmarl_student.errors.ObservationError`, which the node turns into the safe action instead of
feeding garbage to the model (ONNX Runtime would happily propagate NaN into an action).

The model's input is a *selection* of the full observation (the agent's sensing profile). The selection
rules belong to ``kdmarl_student.sensing`` (shared with the distillation code, so training and deployment
cut observations identically); this module only precomputes them for the hot path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from kdmarl_student.errors import ObservationError
from kdmarl_student.sensing import apply_sensing, history_dim, history_plan, sensed_dim, sensed_slices

Layout = Mapping[str, Sequence[int]]
Selector = Callable[..., np.ndarray]  # select(obs) or, for history features, select(obs, previous)


def all_finite(row: np.ndarray) -> bool:
    """True when no entry of a short float32 vector is NaN or Inf: one sum in float64 over the values as Python
    floats (NaN and Inf propagate; float32 values cannot overflow a float64 sum below 10**269 entries). For the
    one-observation hot path: it stays in the interpreter instead of two numpy calls, each of which costs tens of
    microseconds when the process wakes up with cold caches (issue 22, decision latency)."""
    return math.isfinite(sum(row.tolist()))


def validate_observation(observation: Any, source_dim: int, agent: str = "agent") -> np.ndarray:
    """Return the observation as a contiguous float32 array of shape ``[source_dim]`` or ``[B, source_dim]``.

    Raises ``ObservationError`` (reason ``dtype``, ``shape`` or ``non_finite``). Finiteness is checked
    *after* the float32 cast because a finite float64 such as 1e39 overflows to Inf in float32.
    """
    if (type(observation) is np.ndarray and observation.dtype == np.float32 and observation.shape == (source_dim,)
            and observation.flags.c_contiguous and all_finite(observation)):  # the node's buffer: nothing to convert
        return observation
    try:
        array = np.asarray(observation)
    except (TypeError, ValueError) as exc:
        raise ObservationError(agent, "dtype", f"not convertible to an array: {exc}") from exc
    if array.dtype.kind not in "biuf":
        raise ObservationError(agent, "dtype", f"numeric values expected, got dtype {array.dtype}")
    if array.ndim not in (1, 2) or array.shape[-1] != source_dim or array.size == 0:
        raise ObservationError(agent, "shape", f"expected length {source_dim} (or [B, {source_dim}]), got shape "
                               f"{tuple(array.shape)}")
    if array.dtype != np.float32 or not array.flags.c_contiguous:  # the node's float32 buffer needs no copy
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below as non_finite
            array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0].tolist()
        raise ObservationError(agent, "non_finite", f"NaN or Inf at index {bad}")
    return array


def make_selector(layout: Layout, sensing: Mapping[str, Any], source_dim: int) -> Selector:
    """Build the function that cuts the model input out of a validated full observation.

    Works on ``[source_dim]`` and ``[B, source_dim]`` arrays and means exactly what
    ``kdmarl_student.sensing.apply_sensing`` means (it *is* that function for "nearest k" profiles). A
    profile of plain slices is precomputed into one index gather, the same numbers without re-resolving
    the profile on every decision; with history features too (then the selector is called
    ``select(obs, previous)``, ``previous`` the agent's previous full observation in float32 or ``None`` at an
    episode start; tested equal to ``apply_sensing`` bit for bit). Raises ``ValueError`` for a profile that
    does not fit the layout.
    """
    layout_copy = {name: (int(span[0]), int(span[1])) for name, span in layout.items()}
    sensing_copy = dict(sensing)
    sensed_dim(layout_copy, sensing_copy)  # validates the profile against the layout (ValueError)
    if sensing_copy.get("nearest"):

        def select_by_profile(obs: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
            return np.ascontiguousarray(apply_sensing(obs, layout_copy, sensing_copy, previous), dtype=np.float32)

        return select_by_profile
    spans = sorted(layout_copy[name] for name in sensed_slices(layout_copy, sensing_copy))  # layout order
    indices = np.concatenate([np.arange(start, stop) for start, stop in spans]).astype(np.intp)
    if history_dim(layout_copy, sensing_copy):  # apply_sensing's numbers, gathered: features, then history
        mode, history = history_plan(layout_copy, sensing_copy)
        past = np.concatenate([np.arange(start, stop) for _, start, stop in history]).astype(np.intp)

        def select_with_history(obs: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
            prev = obs if previous is None else previous
            if prev.shape != obs.shape:
                raise ValueError(f"previous observation has shape {prev.shape}, the observation {obs.shape}")
            extra = obs[..., past] - prev[..., past] if mode == "delta" else prev[..., past]
            return np.ascontiguousarray(np.concatenate([obs[..., indices], extra], axis=-1), dtype=np.float32)

        return select_with_history
    if np.array_equal(indices, np.arange(source_dim)):
        return lambda obs: obs  # full observation: no copy on the hot path

    def select_slices(obs: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(obs[..., indices])

    return select_slices

"""Sensing profiles: what part of an agent's full observation its student sees.

Pure numpy (robots import this; no torch). The teacher always sees the full observation; a student sees
only the slices its *sensing profile* selects, so students of one team can have different input sizes.
The same transform runs in three places and must agree bit for bit: the distillation (torch twin in
``kdmarl_teacher.profiles.apply_sensing_torch``, tested equal), the bundle runtime and the sim bridge.

A sensing profile is a plain JSON-serializable dict (it is written into ``students.pt`` and the bundle
manifest)::

    {"name": "nearest2",                       # optional, for reports
     "slices": ["self_vel", "self_pos", "landmarks"],   # or "all" (default): every slice of the layout
     "nearest": {"landmarks": 2},              # optional: keep the k slots of that slice closest to the
                                               # agent (slots are 2-D relative positions), nearest first
     "history": {"mode": "delta",              # optional (issue 11): memory as features; "delta" appends
                 "slices": ["self_pos"]}}      # obs_t - obs_{t-1} of these full-observation slices,
                                               # "previous" appends obs_{t-1} itself

Output order is the layout's order (not the order in which the profile lists the slices), so a profile's
input vector is canonical; history features come last, their slices in layout order too. A "nearest k"
slice contributes ``k * slot_dim`` numbers, sorted by squared distance ``x**2 + y**2`` (stable sort: ties
keep the scenario's order). Squared distance is computed with the same float operations in numpy and torch
so the two sorts agree exactly.

History features make a profile *stateful*: the transform needs the agent's previous full observation
(``previous``). They are computed on the robot from its own observations (numpy, no extra model input), so
an MLP student with history features exports as a plain stateless graph. Their slices name
full-observation slices (a slice need not be selected to have its history taken, e.g. positions' deltas
for an agent that cannot sense velocity); by default, every selected slice without "nearest" (whose slot
order changes between steps). At an episode start there is no previous observation: ``previous`` is the
current one (a delta of zero, "no motion seen yet"); training, export, evaluation and the node all reset
that way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

SLOT_DIM = 2  # relative positions in MPE are 2-D
HISTORY_MODES = ("delta", "previous")


def resolve_profile(
    layout: Mapping[str, Sequence[int]], sensing: Mapping
) -> list[tuple[str, int, int, int | None]]:
    """Validate a profile against a layout and return the plan: (slice, start, stop, k or None) in layout order.

    The one reading of a profile (``"slices": "all"`` or absent means every slice of the layout): the numpy
    transform, its torch twin (kdmarl_teacher.profiles), the ONNX input selector and the manifest writer all
    use this plan. Raises ValueError naming the offending field so config errors read as config errors.
    """
    if not isinstance(sensing, Mapping):
        raise ValueError(f"sensing profile must be a mapping, got {type(sensing).__name__}")
    unknown_keys = set(sensing) - {"name", "slices", "nearest", "history", "description"}
    if unknown_keys:
        raise ValueError(f"sensing profile {sensing.get('name', '?')!r}: unknown field(s) {sorted(unknown_keys)}")
    slices = sensing.get("slices", "all")
    if slices == "all" or slices is None:
        wanted = list(layout)
    else:
        if isinstance(slices, str) or not isinstance(slices, Sequence):
            raise ValueError(f"sensing profile {sensing.get('name', '?')!r}: field 'slices' must be a list or 'all'")
        wanted = list(slices)
        missing = [s for s in wanted if s not in layout]
        if missing:
            raise ValueError(
                f"sensing profile {sensing.get('name', '?')!r}: field 'slices' names {missing} not in the "
                f"observation layout {list(layout)}"
            )
        if len(set(wanted)) != len(wanted):
            raise ValueError(f"sensing profile {sensing.get('name', '?')!r}: field 'slices' repeats a slice")
    nearest = dict(sensing.get("nearest") or {})
    for name, k in nearest.items():
        if name not in wanted:
            raise ValueError(
                f"sensing profile {sensing.get('name', '?')!r}: field 'nearest' names {name!r}, which is not a "
                f"selected slice of the layout {list(layout)}"
            )
        start, stop = layout[name]
        n_slots, rem = divmod(stop - start, SLOT_DIM)
        if rem:
            raise ValueError(f"sensing profile: field 'nearest': slice {name!r} is not made of {SLOT_DIM}-D slots")
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n_slots:
            raise ValueError(
                f"sensing profile {sensing.get('name', '?')!r}: field 'nearest.{name}' = {k!r} must be an int "
                f"in [1, {n_slots}]"
            )
    if not wanted:
        raise ValueError(f"sensing profile {sensing.get('name', '?')!r}: selects no slice")
    plan = []
    for name, (start, stop) in sorted(layout.items(), key=lambda kv: kv[1][0]):
        if name in wanted:
            plan.append((name, int(start), int(stop), nearest.get(name)))
    if sensing.get("history") is not None:
        history_plan(layout, sensing)  # validates the history field (it resolves the profile without it)
    return plan


def history_plan(layout: Mapping[str, Sequence[int]], sensing: Mapping) -> tuple[str, list[tuple[str, int, int]]]:
    """The profile's history features: (mode, [(slice, start, stop), ...] in layout order); ("", []) if none.

    Validates the ``history`` field (a mapping with ``mode`` in ``HISTORY_MODES`` and optional ``slices``,
    full-observation slice names) and raises ValueError naming it. Default slices: every selected slice
    without "nearest" (see the module docstring).
    """
    history = sensing.get("history") if isinstance(sensing, Mapping) else None
    if history is None:
        return "", []
    name = sensing.get("name", "?")
    if not isinstance(history, Mapping):
        raise ValueError(f"sensing profile {name!r}: field 'history' must be a mapping {{mode, slices}}")
    unknown = set(history) - {"mode", "slices"}
    if unknown:
        raise ValueError(f"sensing profile {name!r}: field 'history' has unknown field(s) {sorted(unknown)}")
    mode = history.get("mode", "delta")
    if mode not in HISTORY_MODES:
        raise ValueError(f"sensing profile {name!r}: field 'history.mode' = {mode!r}, expected one of "
                         f"{list(HISTORY_MODES)}")
    slices = history.get("slices")
    if slices is None:
        plan = resolve_profile(layout, {k: v for k, v in sensing.items() if k != "history"})
        wanted = [s for s, _, _, k in plan if k is None]
    elif isinstance(slices, str) or not isinstance(slices, Sequence):
        raise ValueError(f"sensing profile {name!r}: field 'history.slices' must be a list of slice names")
    else:
        wanted = list(slices)
        missing = [s for s in wanted if s not in layout]
        if missing:
            raise ValueError(f"sensing profile {name!r}: field 'history.slices' names {missing} not in the "
                             f"observation layout {list(layout)}")
        if len(set(wanted)) != len(wanted):
            raise ValueError(f"sensing profile {name!r}: field 'history.slices' repeats a slice")
    if not wanted:
        raise ValueError(f"sensing profile {name!r}: field 'history' selects no slice")
    spans = sorted((int(layout[s][0]), int(layout[s][1]), s) for s in wanted)
    return str(mode), [(s, start, stop) for start, stop, s in spans]


def history_dim(layout: Mapping[str, Sequence[int]], sensing: Mapping) -> int:
    """How many numbers the history features add (0 without history): also the state a robot keeps."""
    return sum(stop - start for _, start, stop in history_plan(layout, sensing)[1])


def sensed_dim(layout: Mapping[str, Sequence[int]], sensing: Mapping) -> int:
    """Input size of a student with this profile (after ``apply_sensing``, history features included)."""
    plan = resolve_profile(layout, sensing)
    return sum(k * SLOT_DIM if k is not None else stop - start for _, start, stop, k in plan) + history_dim(
        layout, sensing)


def sensing_mask(layout: Mapping[str, Sequence[int]], sensing: Mapping, source_dim: int) -> list[bool]:
    """Per-element mask of the full observation: True where the element can reach the student.

    For a "nearest k" slice every slot can be chosen, so the whole slice is True. For manifests and reports.
    """
    mask = [False] * source_dim
    for _, start, stop, _ in resolve_profile(layout, sensing):
        for j in range(start, stop):
            mask[j] = True
    return mask


def nearest_slots(block: np.ndarray, k: int) -> np.ndarray:
    """Keep the k 2-D slots of ``block`` [..., n_slots * 2] with the smallest squared norm, nearest first."""
    slots = block.reshape(*block.shape[:-1], -1, SLOT_DIM)  # [..., S, 2]
    d2 = slots[..., 0] * slots[..., 0] + slots[..., 1] * slots[..., 1]  # [..., S]
    order = np.argsort(d2, axis=-1, kind="stable")[..., :k]  # [..., k]
    picked = np.take_along_axis(slots, order[..., None], axis=-2)  # [..., k, 2]
    return picked.reshape(*block.shape[:-1], k * SLOT_DIM)


def apply_sensing(obs_full: np.ndarray, layout: Mapping[str, Sequence[int]], sensing: Mapping,
                  previous: np.ndarray | None = None) -> np.ndarray:
    """Apply a sensing profile: obs_full [..., source_dim] (may be zero-padded past the layout) -> [..., input_dim].

    ``previous`` is the agent's previous full observation (same shape), used only by a profile with
    history features; ``None`` means an episode start (the current observation stands in, see the module
    docstring). The result has the same dtype as the input and is a new array (never a view into ``obs_full``).
    """
    obs_full = np.asarray(obs_full)
    plan = resolve_profile(layout, sensing)
    mode, history = history_plan(layout, sensing)
    need = max([stop for _, _, stop, _ in plan] + [stop for _, _, stop in history])
    if obs_full.shape[-1] < need:
        raise ValueError(f"observation has {obs_full.shape[-1]} elements, the layout needs at least {need}")
    parts = []
    for _, start, stop, k in plan:
        block = obs_full[..., start:stop]
        parts.append(block if k is None else nearest_slots(block, k))
    if history:
        prev = obs_full if previous is None else np.asarray(previous, dtype=obs_full.dtype)
        if prev.shape != obs_full.shape:
            raise ValueError(f"previous observation has shape {prev.shape}, the observation {obs_full.shape}")
        for _, start, stop in history:
            before = prev[..., start:stop]
            parts.append(obs_full[..., start:stop] - before if mode == "delta" else before)
    return np.concatenate(parts, axis=-1)


def sensed_slices(layout: Mapping[str, Sequence[int]], sensing: Mapping) -> list[str]:
    """The names of the slices a profile selects, in layout order (``"all"`` spelled out)."""
    return [name for name, _, _, _ in resolve_profile(layout, sensing)]

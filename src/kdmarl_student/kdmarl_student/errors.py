"""Typed errors of the on-board runtime.

A robot must never crash on a bad bundle or a bad observation: the node catches these, logs the message
(which names the file and the field at fault, so an operator knows what to fix without a debugger) and
publishes the safe action. They are plain ``ValueError`` subclasses so callers that only know Python's
built-ins still catch them.
"""

from __future__ import annotations

from pathlib import Path


class BundleError(ValueError):
    """A bundle (manifest, model file or signature) is missing, malformed or untrusted.

    Attributes:
        path: the file at fault (``manifest.json``, ``agent_0.onnx``, ``manifest.sig``, ...).
        field: the manifest field, ONNX property or signature field at fault (JSON-pointer style,
            e.g. ``agents[0].model.sha256``, as the schema errors name it); ``""`` when the whole file is at fault.
        expected: what a valid bundle would have there, in words.
    """

    def __init__(self, path: str | Path, field: str, expected: str) -> None:
        self.path = str(path)
        self.field = field
        self.expected = expected
        where = f"{self.path}: field '{field}'" if field else self.path
        super().__init__(f"{where}: {expected}")


class SignatureError(BundleError):
    """The manifest signature is missing, malformed, or does not verify with the configured key."""


class ObservationError(ValueError):
    """An observation cannot be fed to the policy (wrong length, not numeric, NaN or Inf).

    Attributes:
        agent: the agent whose observation was rejected.
        reason: a short machine-readable cause: ``"shape"``, ``"dtype"`` or ``"non_finite"``; the node
            counts rejections per reason in its diagnostics.
    """

    def __init__(self, agent: str, reason: str, detail: str) -> None:
        self.agent = agent
        self.reason = reason
        super().__init__(f"observation for '{agent}' rejected ({reason}): {detail}")


class PolicyOutputError(RuntimeError):
    """The policy produced an output the robot must not act on (NaN or Inf logits from a broken graph).

    Raised by ``StudentPolicy.act`` after the inference; the node answers with the safe action, counts it
    under ``reason`` (``"non_finite_logits"``, or ``"non_finite_state"`` for a recurrent state that went NaN/Inf;
    the state is then kept as it was) and reports it on ``/diagnostics``. A ``RuntimeError`` rather
    than a ``ValueError``: the input was fine, the model is at fault.

    Attributes:
        agent: the agent whose policy misbehaved.
        reason: a short machine-readable cause (``"non_finite_logits"`` or ``"non_finite_state"``).
    """

    def __init__(self, agent: str, reason: str, detail: str) -> None:
        self.agent = agent
        self.reason = reason
        super().__init__(f"policy output for '{agent}' unusable ({reason}): {detail}")


class DecisionTimeoutError(PolicyOutputError):
    """A decision ran past its deadline and ONNX Runtime cancelled it (``RunOptions.terminate``, issue 22).

    Raised by ``StudentPolicy.act`` (reason ``"deadline"``) when :meth:`StudentPolicy.cancel_overdue` terminated the
    run in flight from another thread; the state (if any) is left as it was and the node answers with the safe
    action, counts ``deadline_overruns`` and, after repeated overruns, stops acting.
    """

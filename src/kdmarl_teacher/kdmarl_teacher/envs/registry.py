"""Scenario name -> scenario class of the torch port (shared by make_env and the PettingZoo adapter)."""

from __future__ import annotations

from .core import Scenario
from .simple_reference import SimpleReference
from .simple_speaker_listener import SimpleSpeakerListener
from .simple_spread import SimpleSpread

SCENARIO_CLASSES: dict[str, type[Scenario]] = {
    "simple_spread": SimpleSpread,
    "simple_speaker_listener": SimpleSpeakerListener,
    "simple_reference": SimpleReference,
}

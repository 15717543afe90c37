"""Discovery for a swarm simulated on one host: every process finds every other, past 32 of them.

Why this exists: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (what the tests, the benchmarks and a laptop
simulation use) makes rmw_fastrtps drop multicast and announce each participant to 127.0.0.1 at the discovery
ports of participant ids 0..31 only (``maxInitialPeersRange = 32`` in its UDP transport). A process that gets a
participant id of 32 or more is still found by the ones below 32 (it announces to them, they answer), but two
processes that both have ids of 32 or more never announce to each other: their endpoints never match. A 16-robot
swarm with updaters (~35 processes) therefore lost a few pairs, and which ones depended on start order
(``scripts/discovery_probe.py --n 40``: 8 of 40 processes matched 33 subscriptions instead of 40).

The fix is the same localhost-only discovery over the whole domain: ``config/fastdds_swarm.xml`` (initial peers
127.0.0.1 for participant ids 0..119, the most one domain's 250 ports hold; SHM and UDP on 127.0.0.1; no
multicast), read by Fast DDS through ``FASTDDS_DEFAULT_PROFILES_FILE`` with
``ROS_AUTOMATIC_DISCOVERY_RANGE=SYSTEM_DEFAULT`` (any other range makes the rmw replace the profile's transports).
It applies only where LOCALHOST with Fast DDS was asked for; another rmw, another range, or a profile the user set
is left alone. Every process of the swarm needs it, including the ones an operator starts beside it (``announce``,
``ros2 topic echo``): ``eval "$(python -m kdmarl_bringup.discovery)"`` prints the exports.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

PROFILE_NAME = "fastdds_swarm.xml"
FASTDDS_RMWS = ("", "rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")
PROFILE_VAR = "FASTDDS_DEFAULT_PROFILES_FILE"
# Any profile the user set wins (FASTRTPS_*: Humble's name, which has no discovery range anyway).
USER_PROFILE_VARS = (PROFILE_VAR, "FASTRTPS_DEFAULT_PROFILES_FILE")


def profile_path() -> Path:
    """config/fastdds_swarm.xml of the source tree, else of the installed share."""
    source = Path(__file__).resolve().parents[1] / "config" / PROFILE_NAME
    if source.is_file():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory  # noqa: PLC0415  optional

        return Path(get_package_share_directory("kdmarl_bringup")) / "config" / PROFILE_NAME
    except (ImportError, LookupError, ValueError):
        return source


def swarm_discovery_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables to add to ``environ`` (default: this process's) so that a one-host swarm discovers fully.

    Empty unless discovery is LOCALHOST with Fast DDS and no Fast DDS profile is set already.
    """
    env = os.environ if environ is None else environ
    if env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "") != "LOCALHOST":
        return {}
    if env.get("RMW_IMPLEMENTATION", "") not in FASTDDS_RMWS:
        return {}
    if any(env.get(name) for name in USER_PROFILE_VARS):
        return {}
    path = profile_path()
    if not path.is_file():
        raise FileNotFoundError(f"Fast DDS swarm profile {path} is missing (kdmarl_bringup config/{PROFILE_NAME})")
    return {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SYSTEM_DEFAULT", PROFILE_VAR: str(path)}


def main() -> int:
    """Print shell exports of the swarm's discovery environment (nothing when it does not apply)."""
    for name, value in swarm_discovery_env().items():
        print(f"export {name}='{value}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())

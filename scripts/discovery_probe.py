#!/usr/bin/env python3
"""Does every ROS 2 process on this host discover every other one? N rclpy processes, one topic, matched counts.

Why: a single-host simulated swarm has one DDS participant per process (16 robots with an updater and a student
each, the bridge, the monitor, the operator: ~35). With ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` rmw_fastrtps
replaces multicast by unicast initial peers on 127.0.0.1, expanded to the discovery ports of participant ids
0..31 only (its UDP transport's ``maxInitialPeersRange = 32``). A participant with an id of 32 or more is found
by the ones below 32 (it announces to them) but two participants both above 31 never announce to each other, so
their endpoints never match. This script shows it (``--n 40``: some processes see fewer than N peers) and checks
the fix (``kdmarl_bringup.discovery``: the same with ``--fixed``).

    python scripts/discovery_probe.py --n 40 --domain 90            # LOCALHOST as rmw_fastrtps sets it up
    python scripts/discovery_probe.py --n 40 --domain 90 --fixed    # the swarm's discovery environment

Each child publishes and subscribes ``/discovery_probe`` (reliable) and prints how many subscriptions its
publisher matched (itself included), all at the same instant ``--wait`` seconds after the last one is up, and stays
until every process has counted; the parent prints the distribution and exits 1 if any process saw fewer than N.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time


def child() -> None:
    """Say ready once the node exists, count when the parent says so, then stay until the parent closes stdin."""
    import rclpy  # noqa: PLC0415  (children only)
    from std_msgs.msg import Empty  # noqa: PLC0415

    rclpy.init()
    node = rclpy.create_node(f"probe_{os.getpid()}")
    pub = node.create_publisher(Empty, "/discovery_probe", 10)
    node.create_subscription(Empty, "/discovery_probe", lambda _msg: None, 10)
    count = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), count.set()), daemon=True).start()
    print(json.dumps({"ready": os.getpid()}), flush=True)
    while not count.is_set():
        rclpy.spin_once(node, timeout_sec=0.1)
    print(json.dumps({"pid": os.getpid(), "subscriptions": pub.get_subscription_count(),
                      "publishers": node.count_publishers("/discovery_probe")}), flush=True)
    sys.stdin.read()  # every process stays in the graph until all have counted
    node.destroy_node()
    rclpy.try_shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=40, help="processes (DDS participants)")
    parser.add_argument("--domain", type=int, default=90, help="ROS_DOMAIN_ID (pick an unused one)")
    parser.add_argument("--wait", type=float, default=10.0,
                        help="seconds between the last process being up and the count")
    parser.add_argument("--fixed", action="store_true", help="use kdmarl_bringup.discovery.swarm_discovery_env")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.child:
        child()
        return 0
    env = dict(os.environ, ROS_DOMAIN_ID=str(ns.domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1")
    if ns.fixed:
        from kdmarl_bringup.discovery import swarm_discovery_env  # noqa: PLC0415  (needs the overlay)

        env.update(swarm_discovery_env(env))
    procs = [subprocess.Popen([sys.executable, __file__, "--child"], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(ns.n)]
    for p in procs:  # every node exists
        json.loads(p.stdout.readline())
    time.sleep(ns.wait)
    for p in procs:  # count at (nearly) the same instant
        p.stdin.write("count\n")
        p.stdin.flush()
    seen = [json.loads(p.stdout.readline()) for p in procs]
    for p in procs:
        p.stdin.close()
        p.wait(timeout=60)
    counts = sorted(s["subscriptions"] for s in seen)
    short = sum(c < ns.n for c in counts)
    print(f"{ns.n} processes ({'fixed' if ns.fixed else 'LOCALHOST'}), matched subscriptions per process: "
          f"min {counts[0]} max {counts[-1]}; {short} of {ns.n} saw fewer than {ns.n}: {counts}")
    return 1 if short else 0


if __name__ == "__main__":
    sys.exit(main())

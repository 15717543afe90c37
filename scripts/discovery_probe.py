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

Each child publishes and subscribes ``/discovery_probe`` (reliable) and reports how many subscriptions its
publisher matched (itself included) as soon as that reaches N, or when the parent's deadline (``--wait`` seconds
after the last process is up) passes; it stays in the graph until every process has reported. The parent prints
the distribution and the slowest full discovery, and exits 1 if any process saw fewer than N. A loaded machine
only makes the probe slower (discovery of 36 processes on two busy cores took over 10 s once); a participant that
is never announced to never reaches N however long the deadline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time


def child(n: int) -> None:
    """Say ready once the node exists; report when ``n`` subscriptions match or the parent says so; stay until EOF."""
    import rclpy  # noqa: PLC0415  (children only)
    from std_msgs.msg import Empty  # noqa: PLC0415

    rclpy.init()
    node = rclpy.create_node(f"probe_{os.getpid()}")
    pub = node.create_publisher(Empty, "/discovery_probe", 10)
    node.create_subscription(Empty, "/discovery_probe", lambda _msg: None, 10)
    deadline, closed = threading.Event(), threading.Event()

    def read_parent() -> None:
        for _line in sys.stdin:  # any line: the deadline has passed
            deadline.set()
        closed.set()  # EOF: every process has reported

    threading.Thread(target=read_parent, daemon=True).start()
    start = time.monotonic()
    print(json.dumps({"ready": os.getpid()}), flush=True)
    reported = False
    while not closed.is_set():  # every process stays in the graph until all have reported
        rclpy.spin_once(node, timeout_sec=0.1)
        matched = pub.get_subscription_count()
        if not reported and (matched >= n or deadline.is_set()):
            print(json.dumps({"pid": os.getpid(), "subscriptions": matched,
                              "seconds": round(time.monotonic() - start, 2)}), flush=True)
            reported = True
    node.destroy_node()
    rclpy.try_shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=40, help="processes (DDS participants)")
    parser.add_argument("--domain", type=int, default=90, help="ROS_DOMAIN_ID (pick an unused one)")
    parser.add_argument("--wait", type=float, default=10.0,
                        help="deadline: seconds after the last process is up for every process to see all N")
    parser.add_argument("--fixed", action="store_true", help="use kdmarl_bringup.discovery.swarm_discovery_env")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.child:
        child(ns.n)
        return 0
    env = dict(os.environ, ROS_DOMAIN_ID=str(ns.domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1")
    if ns.fixed:
        from kdmarl_bringup.discovery import swarm_discovery_env  # noqa: PLC0415  (needs the overlay)

        env.update(swarm_discovery_env(env))
    procs = [subprocess.Popen([sys.executable, __file__, "--child", "--n", str(ns.n)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(ns.n)]
    for p in procs:  # every node exists
        json.loads(p.stdout.readline())
    reports: list[dict | None] = [None] * ns.n

    def read_report(i: int) -> None:
        reports[i] = json.loads(procs[i].stdout.readline())

    readers = [threading.Thread(target=read_report, args=(i,), daemon=True) for i in range(ns.n)]
    for r in readers:
        r.start()
    end = time.monotonic() + ns.wait
    for r in readers:
        r.join(timeout=max(0.0, end - time.monotonic()))
    for p, r in zip(procs, readers, strict=True):  # the deadline has passed: the rest report what they matched by now
        if r.is_alive():
            p.stdin.write("deadline\n")
            p.stdin.flush()
    for r in readers:
        r.join(timeout=60)
    for p in procs:
        p.stdin.close()
        p.wait(timeout=60)
    seen = [s for s in reports if s is not None]
    if len(seen) < ns.n:
        print(f"{ns.n - len(seen)} of {ns.n} processes never reported", file=sys.stderr)
        return 1
    counts = sorted(s["subscriptions"] for s in seen)
    short = sum(c < ns.n for c in counts)
    full = [s["seconds"] for s in seen if s["subscriptions"] >= ns.n]
    slowest = f"{max(full):.1f} s after its node was up" if full else "none"
    print(f"{ns.n} processes ({'fixed' if ns.fixed else 'LOCALHOST'}), matched subscriptions per process: "
          f"min {counts[0]} max {counts[-1]}; {short} of {ns.n} saw fewer than {ns.n}: {counts}; "
          f"slowest full discovery {slowest}")
    return 1 if short else 0


if __name__ == "__main__":
    sys.exit(main())

"""What every benchmark writes: one JSON per benchmark under bench/results/, with the figures, the command
that produced them, the machine and the date, so the README table can be regenerated from the files alone
(`python scripts/bench_table.py`).

Usage from a bench script:

    from benchlib import write_result
    write_result("envs", title="...", columns=[...], rows=[{...}, ...], targets=[...], notes=[...])
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

from kdmarl_student.atomic import atomic_file
from kdmarl_teacher.core.machine import cpu_model

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine_info() -> dict[str, Any]:
    """CPU model, core count, memory and the library versions that move the figures."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages * page_size / 2**30, 1)
    except (ValueError, OSError):
        pass
    for module in ("torch", "onnxruntime", "numpy", "mpe2"):
        mod = sys.modules.get(module)
        if mod is not None:
            info[module] = getattr(mod, "__version__", "?")
    return info


def add_note_argument(parser: argparse.ArgumentParser) -> None:
    """`--note TEXT`, repeatable: what a result cannot know about its own run (the machine's load, runs made
    earlier and read back); the bench appends every note to its result's notes."""
    parser.add_argument("--note", action="append", default=[],
                        help="a note for the result, repeatable (e.g. the machine's load, or how its runs were made)")


def write_result(
    name: str,
    *,
    title: str,
    columns: list[str],
    rows: list[dict[str, Any]],
    targets: list[dict[str, Any]] | None = None,
    notes: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write bench/results/<name>.json atomically and return its path.

    `targets` entries: {"what": str, "target": str, "reached": str, "met": bool}.
    """
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {
        "name": name,
        "title": title,
        "command": " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": machine_info(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "columns": columns,
        "rows": rows,
        "targets": targets or [],
        "notes": notes or [],
        **(extra or {}),
    }
    path = RESULTS_DIR / f"{name}.json"
    with atomic_file(path) as handle:
        handle.write((json.dumps(payload, indent=2) + "\n").encode())
    print(f"wrote {path}")
    return path

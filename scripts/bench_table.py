#!/usr/bin/env python3
"""Render the README's benchmark section from bench/results/*.json (written by bench/benchlib.py).

The section sits between `<!-- bench:begin -->` and `<!-- bench:end -->` in README.md; everything in it is
regenerated, so the README table can never drift from the committed result files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
ORDER = ["envs", "teacher", "distill", "distill_memory", "distill_memory_horizon", "distill_memory_students", "qmix",
         "deployment", "smax_env", "smax_teacher", "smax_students", "runtime", "swarm", "drive"]


def fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)


def render(result: dict) -> str:
    m = result["machine"]
    lines = [f"#### {result['title']}", ""]
    cols = result["columns"]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---" for _ in cols) + "|")
    lines += ["| " + " | ".join(fmt(row.get(c)) for c in cols) + " |" for row in result["rows"]]
    bullets = [f"- Target {t['what']}: {t['target']} — reached {t['reached']} "
               f"({'met' if t.get('met') else '**missed**'})" for t in result.get("targets", [])]
    bullets += [f"- {note}" for note in result.get("notes", [])]
    if bullets:
        lines += ["", *bullets]
    lines.append(
        f"\n<sub>`{result['command']}` · {m.get('cpu')}, {m.get('cores')} cores · {result['date'][:10]}</sub>\n"
    )
    return "\n".join(lines)


def main() -> int:
    # *_quick.json are smoke runs of the benchmark scripts (--quick): never figures for the README
    results = {p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "bench" / "results").glob("*.json"))
               if not p.stem.endswith("_quick")}
    names = [n for n in ORDER if n in results] + sorted(n for n in results if n not in ORDER)
    body = "\n".join(render(results[n]) for n in names) or "_No benchmark results yet: run `make bench`._\n"
    readme = ROOT / "README.md"
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        print(f"{readme}: markers {BEGIN} / {END} not found", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{body}\n{END}{tail}")
    print(f"updated {readme} from {len(names)} result files")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Render the benchmark tables from bench/results/*.json (written by bench/benchlib.py).

Two generated sections, each between a begin and an end marker; everything between the markers is regenerated,
so neither can drift from the committed result files:
- docs/benchmarks.md, `<!-- bench:begin -->` ... `<!-- bench:end -->`: every result file as a table, with its
  targets, notes, command, machine and date.
- README.md, `<!-- headline:begin -->` ... `<!-- headline:end -->`: the headline table, one row per target of
  every result file (met or missed), each linking to its full table in docs/benchmarks.md.

`python scripts/bench_table.py` writes both; `--check` writes nothing and exits 1 if either is out of date.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_PAGE = Path("docs") / "benchmarks.md"
README = Path("README.md")
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
HEADLINE_BEGIN, HEADLINE_END = "<!-- headline:begin -->", "<!-- headline:end -->"
ORDER = ["envs", "teacher", "distill", "distill_memory", "distill_memory_horizon", "distill_memory_students", "qmix",
         "deployment", "peers_qmix_spread", "levers_qmix_spread", "smax_env", "smax_teacher", "peers_smax_3m",
         "peers_smax_2s3z", "peers_smax_5m_vs_6m", "smax_teacher_5m_vs_6m", "levers_smax_3m", "levers_smax_2s3z",
         "levers_smax_5m_vs_6m", "smax_students", "smax_students_5m_vs_6m", "runtime", "swarm", "swarm_decision",
         "drive", "fleet_stop", "fleet_update", "fleet_update_swarm", "grf", "grf_teacher"]


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


def anchor(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, each space a hyphen."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def cell(text: object) -> str:
    return str(text).replace("|", "\\|")


def render_headline(names: list[str], results: dict[str, dict]) -> str:
    rows = []
    for name in names:
        link = f"[{name}]({BENCH_PAGE.as_posix()}#{anchor(results[name]['title'])})"
        for t in results[name].get("targets", []):
            verdict = "met" if t.get("met") else "**missed**"
            if t.get("superseded_by"):  # a later run of another bench measures the same thing with today's config
                later = t["superseded_by"]
                verdict += f", superseded by [{later}]({BENCH_PAGE.as_posix()}#{anchor(results[later]['title'])})"
            rows.append(f"| {cell(t['what'])} | {cell(t['target'])} | {cell(t['reached'])} | {verdict} | {link} "
                        f"| {results[name]['date'][:10]} |")
    if not rows:
        return "_No benchmark targets yet: run `make bench`._\n"
    # "run": the date of the result file's run; a row comparing with a peer says in `reached` whether the peer's
    # figure comes from that same run (bench_peers) or from elsewhere
    return "\n".join(["| what | target | reached | | table | run |", "|---|---|---|---|---|---|", *rows]) + "\n"


def replace_between(text: str, begin: str, end: str, body: str, where: Path) -> str:
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"{where}: expected one {begin} before one {end}")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a generated section is stale")
    args = parser.parse_args(argv)
    # *_quick.json are smoke runs of the benchmark scripts (--quick): never figures for the docs
    results = {p.stem: json.loads(p.read_text()) for p in sorted((ROOT / "bench" / "results").glob("*.json"))
               if not p.stem.endswith("_quick")}
    names = [n for n in ORDER if n in results] + sorted(n for n in results if n not in ORDER)
    body = "\n".join(render(results[n]) for n in names) or "_No benchmark results yet: run `make bench`._\n"
    sections = [(BENCH_PAGE, BEGIN, END, body), (README, HEADLINE_BEGIN, HEADLINE_END, render_headline(names, results))]
    stale = []
    for rel, begin, end, text in sections:
        path = ROOT / rel
        old = path.read_text()
        try:
            new = replace_between(old, begin, end, text, rel)
        except ValueError as err:
            print(err, file=sys.stderr)
            return 1
        if new == old:
            continue
        stale.append(rel)
        if not args.check:
            path.write_text(new)
    if args.check:
        for rel in stale:
            print(f"{rel}: generated section is out of date: run python scripts/bench_table.py", file=sys.stderr)
        return 1 if stale else 0
    print(f"updated {BENCH_PAGE} and the headline table in {README} from {len(names)} result files"
          f" ({len(stale)} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

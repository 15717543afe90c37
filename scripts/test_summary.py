#!/usr/bin/env python3
"""Print the plain `N passed, N failed` line CI reads (skips just before it), from colcon test's JUnit files.

colcon's own summary counts ctest wrappers and is not read by CI, so this script totals the pytest
results of every package: build/<pkg>/pytest.xml (ament_python) and
build/<pkg>/test_results/<pkg>/*.xunit.xml (ament_cmake_pytest). A package with a test/ folder that left
no result file counts as one failure, so a crashed test run cannot pass silently. Exit status: 0 only
when something passed and nothing failed.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def totals(result_file: Path) -> tuple[int, int, int, list[str]]:
    """(passed, failed, skipped, a "test: reason" line per skip) of one JUnit file; errors count as failures."""
    root = ET.parse(result_file).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    tests = failed = skipped = 0
    for suite in suites:
        tests += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
    reasons = [f"{case.get('classname')}::{case.get('name')}: {skip.get('message', '').strip()}"
               for case in root.iter("testcase") if (skip := case.find("skipped")) is not None]
    return tests - failed - skipped, failed, skipped, reasons


def main(workspace: Path) -> int:
    passed = failed = skipped = 0
    for package_xml in sorted((workspace / "src").glob("*/package.xml")):
        package = package_xml.parent.name
        build_dir = workspace / "build" / package
        files = [build_dir / "pytest.xml", *sorted(build_dir.glob(f"test_results/{package}/*.xunit.xml"))]
        files = [f for f in files if f.is_file()]
        if not files and (package_xml.parent / "test").is_dir():
            print(f"{package}: no test results under {build_dir} (did its tests crash?)")
            failed += 1
        for f in files:
            p, fl, s, reasons = totals(f)
            print(f"{package}: {f.relative_to(workspace)}: {p} passed, {fl} failed, {s} skipped")
            for line in reasons:
                print(f"  skipped {line}")
            passed, failed, skipped = passed + p, failed + fl, skipped + s
    print(f"{skipped} skipped")
    print(f"{passed} passed, {failed} failed")  # the last line: CI reads exactly this
    return 0 if passed and not failed else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()))

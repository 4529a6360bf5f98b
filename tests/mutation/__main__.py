"""Mutation testing of the core with mutmut: ``./quickstart mutate [AREA ...]``.

Runs mutmut for the chosen areas (default: all), then writes ``tests/mutation-report.md``: per area the
mutants killed / total and the score, and every survivor by name. Results are cached by mutmut under
``mutants/`` (per function hash), so a later run re-tests only what changed; the report always covers
every area that has results. Equivalent or accepted survivors are explained in tests/README.md.

Not part of .ci/run: a full run takes tens of minutes on two cores."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "tests" / "mutation-report.md"
TARGET = 0.85

# area -> mutant-name globs (mutmut names mutants after the dotted module path).
AREAS: dict[str, list[str]] = {
    "protocol": ["tableside.protocol.*"],
    "actors": ["tableside.actors.*"],
    "pos-submitter": ["tableside.pos.submitter.*"],
    "committer": ["tableside.storage.committer.*"],
    "auth": ["tableside.auth.*"],
}

KILLED = {1, 3, 36, 24, -24, 152, 255, 37, -11, -9}  # failing test, timeout, type check, crash
SURVIVED = {0, 5, 33}  # tests passed, or no test reached the mutant


@dataclass
class AreaResult:
    killed: int = 0
    survived: list[str] = field(default_factory=list)
    unchecked: int = 0

    @property
    def total(self) -> int:
        return self.killed + len(self.survived)

    @property
    def score(self) -> float:
        return self.killed / self.total if self.total else 0.0


def area_of(name: str) -> str | None:
    from fnmatch import fnmatchcase

    for area, globs in AREAS.items():
        if any(fnmatchcase(name, g) for g in globs):
            return area
    return None


def collect() -> dict[str, AreaResult]:
    results = {area: AreaResult() for area in AREAS}
    for meta in sorted((ROOT / "mutants").rglob("*.meta")):
        data = json.loads(meta.read_text())
        for name, code in data.get("exit_code_by_key", {}).items():
            area = area_of(name)
            if area is None:
                continue
            if code in KILLED:
                results[area].killed += 1
            elif code in SURVIVED:
                results[area].survived.append(name)
            else:
                results[area].unchecked += 1
    return results


def write_report(results: dict[str, AreaResult]) -> str:
    lines = [
        "# Mutation report",
        "",
        "Written by `./quickstart mutate` (mutmut; see tests/mutation/__main__.py). Target: at least "
        f"{TARGET:.0%} of mutants killed in every area. Why each survivor is equivalent or accepted: "
        "tests/README.md.",
        "",
        "| area | killed | total | score | target met |",
        "|---|---|---|---|---|",
    ]
    for area, r in results.items():
        met = "yes" if r.total and r.score >= TARGET else "no"
        lines.append(f"| {area} | {r.killed} | {r.total} | {r.score:.1%} | {met} |")
    for area, r in results.items():
        if not r.survived:
            continue
        lines += ["", f"## Survivors: {area} ({len(r.survived)})", ""]
        per_function = Counter(n.rsplit("__mutmut_", 1)[0] for n in r.survived)
        for fn, count in sorted(per_function.items()):
            ids = sorted(int(n.rsplit("_", 1)[1]) for n in r.survived if n.startswith(fn + "__mutmut_"))
            lines.append(f"- `{fn}` ({count}): {', '.join(map(str, ids))}")
    text = "\n".join(lines) + "\n"
    REPORT.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quickstart mutate")
    parser.add_argument("areas", nargs="*", help=f"any of {', '.join(AREAS)} (default: all)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from cached results")
    parser.add_argument("--max-children", type=int, default=2)
    args = parser.parse_args(argv)
    areas = args.areas or list(AREAS)
    unknown = [a for a in areas if a not in AREAS]
    if unknown:
        parser.error(f"unknown area(s) {', '.join(unknown)}; choose from {', '.join(AREAS)}")
    if not args.report_only:
        globs = [g for a in areas for g in AREAS[a]]
        cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children), *globs]
        subprocess.run(cmd, cwd=ROOT, check=False, stdout=subprocess.DEVNULL)
    results = collect()
    print(write_report(results))
    return 0 if all(results[a].total and results[a].score >= TARGET for a in areas) else 1


if __name__ == "__main__":
    raise SystemExit(main())

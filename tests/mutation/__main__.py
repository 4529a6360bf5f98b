"""Mutation testing of the core with mutmut: ``./quickstart mutate [AREA ...]``.

Each area is mutated against its own unit tests (``AREAS``): the modules are reached by nearly every
integration test, so selecting "every test that touches the function" would run the whole suite per
mutant (hours on two cores). A mutant the unit tests kill is killed by the full suite too, so the score
is a lower bound. Every area runs in a scratch copy of the project's config under
``build/mutation/AREA/`` (mutmut reads its settings from the ``pyproject.toml`` in its working directory
and keeps its results in ``mutants/`` there), then ``tests/mutation-report.md`` is written: per area the
mutants killed / total and the score, and every survivor by name. Why each survivor is equivalent or
accepted: ``tests/mutation/survivors-*.md``.

Not part of .ci/run: a full run takes about an hour on two cores."""

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

BUILD = ROOT / "build" / "mutation"


@dataclass(frozen=True)
class Area:
    files: list[str]  # what is mutated (mutmut's only_mutate)
    tests: list[str]  # the tests each mutant runs against

    @property
    def globs(self) -> list[str]:
        # mutmut names mutants after the dotted module path
        return [f.removesuffix(".py").removesuffix("/*").replace("/", ".") + ".*" for f in self.files]


AREAS: dict[str, Area] = {
    "protocol": Area(["tableside/protocol/*"], ["tests/protocol"]),
    "actors": Area(["tableside/actors/*"], ["tests/actors"]),
    "pos-submitter": Area(["tableside/pos/submitter.py"], ["tests/pos/test_submitter.py"]),
    "committer": Area(["tableside/storage/committer.py"], ["tests/storage/test_committer.py"]),
    "auth": Area(["tableside/auth.py"], ["tests/test_auth.py", "tests/storage/test_token_storage.py"]),
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


def prepare(area: str) -> Path:
    """``build/mutation/AREA``: the project's pyproject.toml with this area's ``[tool.mutmut]``, and links
    to the package and the tests."""
    spec = AREAS[area]
    work = BUILD / area
    work.mkdir(parents=True, exist_ok=True)
    for name in ("tableside", "tests"):
        link = work / name
        if not link.is_symlink():
            link.symlink_to(ROOT / name, target_is_directory=True)
    text = (ROOT / "pyproject.toml").read_text()
    head, sep, tail = text.partition("[tool.mutmut]")
    assert sep, "pyproject.toml has no [tool.mutmut] section"
    # Keep the shared settings (pytest args), replace what to mutate and which tests run.
    shared = [ln for ln in tail.splitlines() if ln.startswith("pytest_add_cli_args =")]
    section = [
        "[tool.mutmut]",
        'source_paths = ["tableside"]',
        f"only_mutate = {json.dumps(spec.files)}",
        f"pytest_add_cli_args_test_selection = {json.dumps(spec.tests)}",
        *shared,
    ]
    (work / "pyproject.toml").write_text(head + "\n".join(section) + "\n")
    return work


def collect() -> dict[str, AreaResult]:
    from fnmatch import fnmatchcase

    results = {area: AreaResult() for area in AREAS}
    for area, spec in AREAS.items():
        for meta in sorted((BUILD / area / "mutants").rglob("*.meta")):
            data = json.loads(meta.read_text())
            for name, code in data.get("exit_code_by_key", {}).items():
                if not any(fnmatchcase(name, g) for g in spec.globs):
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
        f"{TARGET:.0%} of mutants killed in every area, each area against its own unit tests (a lower "
        "bound for the whole suite). Why each survivor is equivalent or accepted: "
        "tests/mutation/survivors-*.md.",
        "",
        "| area | mutated | tests | killed | total | not checked | score | target met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for area, r in results.items():
        spec = AREAS[area]
        met = "yes" if r.total and r.score >= TARGET and not r.unchecked else "no"
        lines.append(
            f"| {area} | {', '.join(spec.files)} | {', '.join(spec.tests)} | {r.killed} | {r.total} | "
            f"{r.unchecked} | {r.score:.1%} | {met} |"
        )
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
        for area in areas:
            work = prepare(area)
            print(f"mutating {area} in {work} ...", file=sys.stderr, flush=True)
            cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children)]
            subprocess.run(cmd, cwd=work, check=False, stdout=subprocess.DEVNULL)
    results = collect()
    print(write_report(results))
    return 0 if all(results[a].total and results[a].score >= TARGET and not results[a].unchecked for a in areas) else 1


if __name__ == "__main__":
    raise SystemExit(main())

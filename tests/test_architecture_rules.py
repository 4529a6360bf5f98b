"""docs/architecture.md's package table ("what it may import") and "who owns what", checked on the source:
each package imports only what the table allows, handlers never hold a ``TableActor`` (only refs from the
``ActorDirectory``), and nothing outside the actors writes a group's state."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import tableside

ROOT = Path(tableside.__file__).parent

# The table in docs/architecture.md, as module prefixes inside ``tableside`` (a package may always import
# its own modules). Keep the two in step.
MAY_IMPORT: dict[str, tuple[str, ...]] = {
    "protocol": (),
    "actors": ("protocol", "storage.interface", "pos.interface", "pos.submitter", "clock", "menu", "metrics"),
    "storage": ("config",),
    "pos": ("clock",),
    "cluster": ("actors", "protocol", "storage.interface", "clock", "config", "metrics"),
    "booking": (),
    "payments": ("clock", "config"),
    "reservations": ("booking", "payments", "storage.interface", "storage.reservations", "clock", "config",
                     "metrics", "protocol"),
}


def tableside_imports(path: Path) -> list[tuple[str, int]]:
    """Modules of ``tableside`` that ``path`` imports (absolute or relative), without the prefix."""
    package = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [base] if node.module else [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found += [(n.removeprefix("tableside."), node.lineno) for n in names if n.startswith("tableside.")]
    return found


def allowed(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_packages_import_only_what_the_architecture_table_allows() -> None:
    violations = []
    for package, may in MAY_IMPORT.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for module, lineno in tableside_imports(path):
                if not allowed(module, (package, *may)):
                    violations.append(f"{path.relative_to(ROOT)}:{lineno} imports tableside.{module}")
    assert not violations, "\n".join(violations)


def test_the_import_checker_sees_relative_and_absolute_imports(tmp_path: Path) -> None:
    path = ROOT / "actors" / "table.py"
    modules = {m for m, _ in tableside_imports(path)}
    assert {"protocol", "storage.interface", "actors.messages"} <= modules
    assert not allowed("server.app", ("actors", *MAY_IMPORT["actors"]))
    relative = {m for m, _ in tableside_imports(ROOT / "protocol" / "messages.py")}
    assert "protocol.codecs" in relative


def test_handlers_hold_refs_never_actors() -> None:
    """Handlers ask the directory for a ref (tell/ask); no server module names ``TableActor`` or reaches
    into the directory's actors."""
    violations = []
    for path in sorted((ROOT / "server").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == "TableActor":
                violations.append(f"{path.name}:{node.lineno} names TableActor")
            if isinstance(node, ast.alias) and node.name == "TableActor":
                violations.append(f"{path.name} imports TableActor")
            if isinstance(node, ast.Attribute) and node.attr in {"_actors", "_state", "_sinks"}:
                violations.append(f"{path.name}:{node.lineno} touches .{node.attr}")
    assert not violations, "\n".join(violations)


def test_only_the_actors_write_group_state() -> None:
    """A group's cart, lock and members are written by its TableActor alone: outside ``actors`` and
    ``storage`` nothing calls the group commit (``commit`` of the committer, ``commit_writes``)."""
    violations = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in {"actors", "storage"}:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in {"commit", "commit_writes"}:
                violations.append(f"{rel}:{node.lineno} calls .{node.func.attr}()")
    assert not violations, "\n".join(violations)


# The pure core of reservations: the standard library only, none of it that does I/O or reads the clock.
BOOKING_NO_IO = {"asyncio", "socket", "selectors", "ssl", "http", "urllib", "threading", "subprocess", "os",
                 "io", "pathlib", "shutil", "tempfile", "sqlite3", "time", "random", "secrets", "logging"}
CLOCK_READS = {("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"),
               ("time", "time"), ("time", "monotonic")}


def test_booking_is_pure_standard_library_without_io_or_clock_reads() -> None:
    violations = []
    for path in sorted((ROOT / "booking").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            roots: list[str] = []
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = [node.module.split(".")[0]]
            for root in roots:
                if root != "tableside" and (root not in sys.stdlib_module_names or root in BOOKING_NO_IO):
                    violations.append(f"{path.name}:{node.lineno} imports {root}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and isinstance(node.func.value, ast.Name) \
                    and (node.func.value.id, node.func.attr) in CLOCK_READS:
                violations.append(f"{path.name}:{node.lineno} reads the clock")
    assert (ROOT / "booking" / "availability.py").exists()
    assert not violations, "\n".join(violations)

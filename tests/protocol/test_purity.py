"""tableside.protocol must stay sans-I/O: no networking, event loop, threads or database imports."""

from __future__ import annotations

import ast
from pathlib import Path

import tableside.protocol

FORBIDDEN = {
    "asyncio",
    "socket",
    "tornado",
    "sqlalchemy",
    "asyncpg",
    "redis",
    "threading",
    "selectors",
    "ssl",
    "http",
    "urllib",
}

PACKAGE_DIR = Path(tableside.protocol.__file__).parent


def _imported_roots(tree: ast.AST) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node.lineno))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr)
            in {"__import__", "import_module"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.args[0].value.split(".")[0], node.lineno))
    return found


def test_protocol_package_has_modules() -> None:
    names = {p.name for p in PACKAGE_DIR.glob("*.py")}
    assert {"errors.py", "limits.py", "codecs.py", "messages.py", "server_messages.py", "frames.py"} <= names
    assert "ratelimit.py" in names


def test_no_io_imports() -> None:
    violations: list[str] = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for root, lineno in _imported_roots(tree):
            if root in FORBIDDEN:
                violations.append(f"{path.name}:{lineno} imports {root}")
    assert not violations, "tableside.protocol must stay pure:\n" + "\n".join(violations)


def test_detector_catches_forbidden_imports() -> None:
    source = (
        "import asyncio\nfrom tornado.web import X\nimport importlib\nimportlib.import_module('socket')\n"
    )
    roots = {root for root, _ in _imported_roots(ast.parse(source))}
    assert {"asyncio", "tornado", "socket"} <= roots

"""The import layers of STYLE.md §1, checked on the source with :mod:`ast` (no extra tool).

Every ``import rmq.X`` / ``from rmq.X... import`` in a package module, including imports inside
functions and under ``TYPE_CHECKING``, must name a package its layer may use. Composition roots
(``*/tap.py``, the top-level ``rmq/standalone.py`` and ``rmq/testing.py``) may import anything.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import rmq

#: package -> the rmq packages its modules may import (itself included).
ALLOWED: dict[str, frozenset[str]] = {
    "common": frozenset({"common"}),
    "remoting": frozenset({"common", "remoting"}),
    "store": frozenset({"common", "store"}),
    "namesrv": frozenset({"common", "remoting", "namesrv"}),
    "broker": frozenset({"common", "remoting", "store", "broker"}),
    "client": frozenset({"common", "remoting", "client"}),
    "admin": frozenset({"common", "remoting", "client", "admin"}),
}
COMPOSITION_ROOTS = frozenset({"tap.py"})


def imported_modules(source: str) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every absolute import in ``source``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def violations(package: str, name: str, source: str) -> list[str]:
    """Imports in module ``name`` of ``rmq.<package>`` that its layer forbids."""
    if name in COMPOSITION_ROOTS:
        return []
    allowed = ALLOWED[package]
    found = []
    for line, module in imported_modules(source):
        parts = module.split(".")
        if parts[0] == "rmq" and len(parts) > 1 and parts[1] not in allowed:
            found.append(f"rmq/{package}/{name}:{line}: imports {module}")
    return found


class ImportLayerTests(SynchronousTestCase):
    """STYLE.md §1: who may import whom."""

    def test_packages_respect_layers(self) -> None:
        """No module of rmq's packages imports a package above or beside its layer."""
        root = Path(rmq.__file__).parent
        packages = sorted(p.name for p in root.iterdir() if (p / "__init__.py").exists())
        self.assertEqual(sorted(ALLOWED), packages)
        found: list[str] = []
        for package in packages:
            for path in sorted((root / package).rglob("*.py")):
                rel = str(path.relative_to(root / package))
                found += violations(package, rel, path.read_text(encoding="utf-8"))
        self.assertEqual(found, [])

    def test_checker_sees_violations(self) -> None:
        """The checker reports a forbidden import, also inside a function or TYPE_CHECKING."""
        source = (
            "from typing import TYPE_CHECKING\n"
            "import rmq.common.errors\n"
            "if TYPE_CHECKING:\n"
            "    from rmq.broker.service import Broker\n"
            "def f():\n"
            "    import rmq.client\n"
        )
        self.assertEqual(
            violations("namesrv", "x.py", source),
            [
                "rmq/namesrv/x.py:4: imports rmq.broker.service",
                "rmq/namesrv/x.py:6: imports rmq.client",
            ],
        )
        self.assertEqual(
            violations("store", "x.py", "from rmq.remoting import codec\n"),
            ["rmq/store/x.py:1: imports rmq.remoting"],
        )
        self.assertEqual(violations("broker", "tap.py", "import rmq.namesrv\n"), [])

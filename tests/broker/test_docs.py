"""docs/broker.md describes every module of rmq.broker."""

from __future__ import annotations

import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import rmq.broker

DOC = Path(__file__).resolve().parents[2] / "docs" / "broker.md"


class BrokerDocTests(SynchronousTestCase):
    def test_module_table_lists_every_module(self) -> None:
        """The "Shape of the code" table has one row per module of rmq/broker, and no others."""
        text = DOC.read_text(encoding="utf-8")
        section = text.split("## Shape of the code", 1)[1].split("\n## ", 1)[0]
        rows = re.findall(r"^\| `([a-z_]+\.py)` \|", section, re.MULTILINE)
        package = Path(rmq.broker.__file__).parent
        modules = sorted(p.name for p in package.glob("*.py") if p.name != "__init__.py")
        self.assertEqual(sorted(rows), modules)
        self.assertEqual(len(rows), len(set(rows)))

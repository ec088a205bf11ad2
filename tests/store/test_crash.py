"""kill -9 during SYNC_FLUSH puts loses no acknowledged put (real subprocess, real fsync)."""

from __future__ import annotations

import random

from twisted.trial.unittest import TestCase

from rmq.common.asyncutil import global_reactor
from tests.store.crash_child import run_cycle, verify


class KillNineTests(TestCase):
    """Crash cycles against one store directory."""

    timeout = 60

    async def test_no_acknowledged_put_lost(self) -> None:
        """Five kill -9 cycles: every PUT_OK put is present after recovery, and puts continue."""
        root = self.mktemp()
        rng = random.Random(7)
        reactor = global_reactor()
        previous = 0
        for _cycle in range(5):
            acked, start, errors = await run_cycle(reactor, root, rng.randint(10, 80))
            self.assertEqual([e for e in errors if "MISMATCH" in e or "ERROR" in e], [])
            self.assertGreater(len(acked), 0, errors)
            self.assertGreaterEqual(start, previous)
            total, bad = verify(root, acked)
            self.assertEqual(bad, [])
            self.assertGreaterEqual(total, max(acked) + 1)
            previous = total

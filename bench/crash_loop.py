"""kill -9 loop: ``python bench/crash_loop.py [CYCLES] [--outstanding N]`` (default 100 cycles).

Each cycle starts ``tests/store/crash_child.py`` (SYNC_FLUSH puts on one store directory), kills it
with SIGKILL after a random number of acknowledged puts, reopens the store (abnormal recovery) and
checks that every PUT_OK put is present with its queue offset, commit-log offset and body.
Exits non-zero at the first lost put.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import Deferred  # noqa: E402

from tests.store.crash_child import run_cycle, verify  # noqa: E402


async def loop(cycles: int, outstanding: int, seed: int) -> int:
    """Run the cycles; returns the exit status."""
    rng = random.Random(seed)
    root = tempfile.mkdtemp(prefix="rmq-crash-")
    total_acked = 0
    t0 = time.monotonic()
    for cycle in range(1, cycles + 1):
        acked, start, errors = await run_cycle(reactor, root, rng.randint(5, 400), outstanding)
        total, bad = verify(root, acked)
        total_acked += len(acked)
        print(f"cycle {cycle}: from {start}, {len(acked)} acked, {total} stored, lost {len(bad)}")
        if bad or any("MISMATCH" in e or "ERROR" in e for e in errors):
            print(f"FAILED: lost {bad[:20]} errors {errors[:5]} (store kept in {root})")
            return 1
    print(
        f"OK: {cycles} kill -9 cycles, {total_acked} acknowledged puts, none lost "
        f"({time.monotonic() - t0:.1f} s, store in {root})"
    )
    return 0


def main() -> None:
    """Parse arguments and run."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("cycles", type=int, nargs="?", default=100)
    p.add_argument("--outstanding", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    status: list[int] = []

    def finished(result: object) -> None:
        status.append(result if isinstance(result, int) else 2)
        reactor.stop()

    def run() -> None:
        d = Deferred.fromCoroutine(loop(args.cycles, args.outstanding, args.seed))
        d.addBoth(finished)

    reactor.callWhenRunning(run)
    reactor.run()
    sys.exit(status[0] if status else 2)


if __name__ == "__main__":
    main()

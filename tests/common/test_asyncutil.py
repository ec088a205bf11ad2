"""Tests for rmq.common.asyncutil.CoalescingRunner on a task.Clock."""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from rmq.common.asyncutil import CoalescingRunner


class CoalescingRunnerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000)
        self.runs: list[Deferred[None]] = []
        self.failures: list[Failure] = []
        self.runner = CoalescingRunner(self.clock, self.job, self.failures.append)

    def job(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.runs.append(d)
        return d

    def test_inactive_until_started(self) -> None:
        """Kicks and timers do nothing before start(); start() runs the job once."""
        self.runner.kick()
        self.runner.run_at(1_000_500)
        self.assertEqual((self.runs, self.clock.getDelayedCalls()), ([], []))
        self.runner.start()
        self.assertEqual(len(self.runs), 1)

    def test_kicks_during_a_run_coalesce(self) -> None:
        """Any number of kicks during a run give exactly one more run after it."""
        self.runner.start()
        self.runner.kick()
        self.runner.kick()
        self.assertEqual(len(self.runs), 1)
        self.runs[0].callback(None)
        self.assertEqual(len(self.runs), 2)
        self.runs[1].callback(None)
        self.assertEqual(len(self.runs), 2)

    def test_one_timer_at_the_earliest_due_time(self) -> None:
        """run_at keeps a single timer for the earliest time asked."""
        self.runner.start()
        self.runs[0].callback(None)
        self.runner.run_at(1_003_000)
        self.runner.run_at(1_005_000)
        self.runner.run_at(1_002_000)
        (call,) = self.clock.getDelayedCalls()
        self.assertEqual(call.getTime(), 1_002.0)
        self.clock.advance(2)
        self.assertEqual(len(self.runs), 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_failure_reported_and_stop_cancels_timer(self) -> None:
        """A failed run goes to on_failure; stop() cancels the timer and refuses kicks."""
        runner = CoalescingRunner(
            self.clock, lambda: fail(ValueError("boom")), self.failures.append
        )
        runner.start()
        (failure,) = self.failures
        self.assertTrue(failure.check(ValueError))
        runner.run_at(1_010_000)
        runner.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        runner.kick()
        self.assertEqual(len(self.failures), 1)

    def test_success_needs_no_callback(self) -> None:
        """A synchronous successful job leaves the runner idle and ready to run again."""
        count: list[int] = []

        def job() -> Deferred[None]:
            count.append(1)
            return succeed(None)

        runner = CoalescingRunner(self.clock, job, self.failures.append)
        runner.start()
        runner.kick()
        self.assertEqual((len(count), self.failures), (2, []))

"""Async helpers: the one place that imports the global reactor, coroutine wrapping, safe ticks,
and :class:`CoalescingRunner` (one run at a time, kicks coalesced, one timer at the earliest due).

``global_reactor()`` is called only at composition roots (tap modules, public client constructors
given ``clock=None``). Everything else receives a clock or endpoint.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, cast

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorCore,
    IReactorTCP,
    IReactorThreads,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

P = ParamSpec("P")
T = TypeVar("T")

_log = Logger(namespace="rmq.common.asyncutil")


class IRmqReactor(IReactorCore, IReactorTime, IReactorTCP, IReactorThreads):  # type: ignore[misc]
    """The reactor features rmq's composition roots rely on."""


def global_reactor() -> Any:
    """Return the installed global reactor (imported at call time, after twistd installed it)."""
    from twisted.internet import reactor

    return cast(Any, reactor)


def deferred_api(f: Callable[P, Coroutine[Deferred[Any], Any, T]]) -> Callable[P, Deferred[T]]:
    """Wrap an ``async def`` so callers get a ``Deferred`` (coroutines never cross a module)."""

    @functools.wraps(f)
    def run(*args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        return Deferred.fromCoroutine(f(*args, **kwargs))

    return run


def now_ms(clock: IReactorTime) -> int:
    """RocketMQ's millisecond timestamp from an injected clock."""
    return int(clock.seconds() * 1000)


def logged_tick(f: Callable[[], Any], what: str | None = None) -> Callable[[], Deferred[None]]:
    """Wrap a periodic task so an exception or a failed Deferred is logged and never stops it."""
    name = what or getattr(f, "__qualname__", repr(f))

    def tick() -> Deferred[None]:
        d: Deferred[Any] = maybeDeferred(f)

        def failed(failure: Failure) -> None:
            _log.failure("Periodic task {task} failed", failure, task=name)

        d.addCallbacks(lambda _: None, failed)
        return d

    return tick


def log_failure(what: str) -> Callable[[Failure], None]:
    """An errback for Deferreds nobody awaits: logs the failure with a description."""

    def errback(failure: Failure) -> None:
        _log.failure("Unhandled failure in {what}", failure, what=what)

    return errback


class CoalescingRunner:
    """Runs an async ``job`` one at a time: now when kicked, and at the earliest time asked for.

    ``kick()`` starts ``job`` at once or, while a run is in progress, once more after it (any
    number of kicks during a run coalesce into one rerun). ``run_at(due_ms)`` keeps a single
    ``callLater`` on ``clock`` for the earliest due time asked (epoch ms; a later time is ignored
    while an earlier one is pending). A failed run goes to ``on_failure``, which may ``run_at`` a
    retry. Nothing runs unless :attr:`active`: ``start()`` sets it and kicks, ``stop()`` clears
    it and cancels the timer.
    """

    def __init__(
        self,
        clock: IReactorTime,
        job: Callable[[], Deferred[None]],
        on_failure: Callable[[Failure], None],
    ) -> None:
        self._clock = clock
        self._job = job
        self._on_failure = on_failure
        self.active = False
        self._busy = False
        self._again = False
        self._call: IDelayedCall | None = None
        self._call_due = 0

    def start(self) -> None:
        """Allow runs and start one now."""
        self.active = True
        self.kick()

    def stop(self) -> None:
        """Refuse further runs and cancel the timer (a run in progress finishes on its own)."""
        self.active = False
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def kick(self) -> None:
        """Run ``job`` now, or once more after the run in progress."""
        if not self.active:
            return
        if self._busy:
            self._again = True
            return
        self._busy = True
        d = self._job()

        def done(result: object) -> None:
            self._busy = False
            if isinstance(result, Failure):
                self._on_failure(result)
            if self._again:
                self._again = False
                self.kick()

        d.addBoth(done)

    def run_at(self, due_ms: int) -> None:
        """Kick at ``due_ms`` (epoch ms on ``clock``) unless a run is already due earlier."""
        if not self.active:
            return
        if self._call is not None and self._call.active():
            if self._call_due <= due_ms:
                return
            self._call.cancel()
        self._call_due = due_ms

        def fire() -> None:
            self._call = None
            self.kick()

        self._call = self._clock.callLater(max(0.0, (due_ms - now_ms(self._clock)) / 1000.0), fire)

"""Async helpers: the one place that imports the global reactor, coroutine wrapping, safe ticks.

``global_reactor()`` is called only at composition roots (tap modules, public client constructors
given ``clock=None``). Everything else receives a clock or endpoint.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, cast

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorCore, IReactorTCP, IReactorThreads, IReactorTime
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

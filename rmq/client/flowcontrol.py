"""Bounds on in-flight work: a count and a byte budget; callers over it wait on a Deferred."""

from __future__ import annotations

from collections import deque

from twisted.internet.defer import Deferred, succeed


class InFlightLimiter:
    """At most ``max_count`` items and ``max_bytes`` bytes in flight; FIFO waiters.

    ``acquire(size)`` fires (with None) once the item fits; the holder must ``release(size)``.
    An item larger than ``max_bytes`` is admitted alone (when nothing else is in flight), so it
    can never wait forever. Cancelling a waiting Deferred removes it from the queue.
    """

    def __init__(self, max_count: int, max_bytes: int) -> None:
        if max_count < 1 or max_bytes < 1:
            raise ValueError("limits must be positive")
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.count = 0
        self.bytes = 0
        self._waiters: deque[tuple[int, Deferred[None]]] = deque()

    def _fits(self, size: int) -> bool:
        if self.count == 0:
            return True
        return self.count + 1 <= self.max_count and self.bytes + size <= self.max_bytes

    def try_acquire(self, size: int = 0) -> bool:
        """Reserve at once if the item fits and nobody waits; False otherwise (no side effect)."""
        if not self._waiters and self._fits(size):
            self.count += 1
            self.bytes += size
            return True
        return False

    def acquire(self, size: int = 0) -> Deferred[None]:
        """Fire when ``size`` bytes and one slot are reserved for the caller."""
        if self.try_acquire(size):
            return succeed(None)

        def cancel(d: Deferred[None]) -> None:
            try:
                self._waiters.remove((size, d))
            except ValueError:
                pass

        d: Deferred[None] = Deferred(cancel)
        self._waiters.append((size, d))
        return d

    @property
    def waiting(self) -> int:
        """How many callers wait."""
        return len(self._waiters)

    def release(self, size: int = 0) -> None:
        """Give back one slot and ``size`` bytes; admit waiters in order while they fit."""
        self.count -= 1
        self.bytes -= size
        if self.count < 0 or self.bytes < 0:
            self.count = max(self.count, 0)
            self.bytes = max(self.bytes, 0)
            raise RuntimeError("release without acquire")
        while self._waiters and self._fits(self._waiters[0][0]):
            wsize, d = self._waiters.popleft()
            self.count += 1
            self.bytes += wsize
            d.callback(None)

    def fail_waiters(self, reason: Exception) -> None:
        """Fail every waiting caller (shutdown)."""
        waiting, self._waiters = self._waiters, deque()
        for _, d in waiting:
            if not d.called:
                d.errback(reason)

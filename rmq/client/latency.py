"""Latency-based broker avoidance (Java ``MQFaultStrategy`` + ``LatencyFaultToleranceImpl``).

A send that took long, or failed, makes its broker "not available" for a while; queue selection
prefers available brokers and falls back to the least bad one.
"""

from __future__ import annotations

import attrs
from twisted.internet.interfaces import IReactorTime

# Java's defaults: a latency at or above LATENCY_MAX[i] ms isolates the broker NOT_AVAILABLE[i] ms.
LATENCY_MAX_MS = (50, 100, 550, 1000, 2000, 3000, 15000)
NOT_AVAILABLE_MS = (0, 0, 30000, 60000, 120000, 180000, 600000)
ISOLATION_LATENCY_MS = 30000


def not_available_duration_ms(latency_ms: float) -> int:
    """How long a broker is avoided after a send that took ``latency_ms``."""
    for i in range(len(LATENCY_MAX_MS) - 1, -1, -1):
        if latency_ms >= LATENCY_MAX_MS[i]:
            return NOT_AVAILABLE_MS[i]
    return 0


@attrs.define
class _FaultItem:
    name: str
    latency_ms: float
    start_s: float


@attrs.define
class LatencyFaultTolerance:
    """Per-broker fault items keyed by broker name; time from the injected clock."""

    clock: IReactorTime
    _items: dict[str, _FaultItem] = attrs.Factory(dict)

    def update(self, broker_name: str, latency_ms: float, isolation: bool) -> None:
        """Record a send's outcome; ``isolation`` (a failure) counts as a 30 s latency."""
        if not isolation and latency_ms < LATENCY_MAX_MS[2] and broker_name not in self._items:
            return  # fast answer from a broker with no record: nothing to avoid (hot path)
        lat = ISOLATION_LATENCY_MS if isolation else latency_ms
        until = self.clock.seconds() + not_available_duration_ms(lat) / 1000.0
        self._items[broker_name] = _FaultItem(broker_name, lat, until)

    def is_available(self, broker_name: str) -> bool:
        """True if the broker has no fault item or its avoidance period is over."""
        item = self._items.get(broker_name)
        return item is None or self.clock.seconds() >= item.start_s

    def remove(self, broker_name: str) -> None:
        """Forget a broker (it answered well, or it left the route)."""
        self._items.pop(broker_name, None)

    def pick_one_at_least(self) -> str | None:
        """The least bad broker: the one available soonest, then with the lowest latency."""
        if not self._items:
            return None
        return min(self._items.values(), key=lambda it: (it.start_s, it.latency_ms)).name

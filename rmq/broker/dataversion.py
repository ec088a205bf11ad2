"""DataVersion: the (timestamp, counter) pair RocketMQ uses to tell whether a config table changed.

Mirrors Java's ``org.apache.rocketmq.common.DataVersion``. Equality is both fields equal.
"""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class DataVersion:
    """A config table's version; ``counter`` grows by one per change, ``timestamp`` in epoch ms."""

    timestamp: int = 0
    counter: int = 0

    def next(self, now_ms: int) -> DataVersion:
        """The version after one more change at ``now_ms``."""
        return DataVersion(timestamp=now_ms, counter=self.counter + 1)

    def to_json(self) -> dict[str, int]:
        """Plain dict in Java's key order (``counter``, ``timestamp``)."""
        return {"counter": self.counter, "timestamp": self.timestamp}

    @classmethod
    def from_json(cls, obj: Any) -> DataVersion:
        """Read ``{"counter":…,"timestamp":…}``; missing or malformed fields read as 0."""
        if not isinstance(obj, dict):
            return cls()
        return cls(timestamp=_as_int(obj.get("timestamp")), counter=_as_int(obj.get("counter")))


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0

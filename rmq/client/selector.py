"""Queue selectors for ordered sends (Java ``SelectMessageQueueByHash``, ``...ByRandom``) and a
round-robin one."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import attrs
from zope.interface import implementer

from rmq.client.interfaces import IMessageQueueSelector
from rmq.client.message_queue import MessageQueue


def java_string_hash(s: str) -> int:
    """Java ``String.hashCode()`` (signed 32-bit, over UTF-16 code units)."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def _java_hash(arg: Any) -> int:
    if isinstance(arg, bool):
        return 1231 if arg else 1237
    if isinstance(arg, int):
        if -(1 << 31) <= arg < (1 << 31):
            return arg  # Integer.hashCode
        v = arg & 0xFFFFFFFFFFFFFFFF  # Long.hashCode
        h = (v ^ (v >> 32)) & 0xFFFFFFFF
        return h - (1 << 32) if h >= 1 << 31 else h
    if isinstance(arg, str):
        return java_string_hash(arg)
    return hash(arg)


@implementer(IMessageQueueSelector)
class SelectMessageQueueByHash:
    """``abs(hashCode(arg)) % len(mqs)``, with Java's hash codes for str and int keys, so a Java
    producer and an rmq producer put the same key on the same queue."""

    def select(self, mqs: Sequence[MessageQueue], msg: Any, arg: Any) -> MessageQueue:
        """Return the queue of ``arg``'s hash."""
        return mqs[abs(_java_hash(arg)) % len(mqs)]


@implementer(IMessageQueueSelector)
@attrs.define
class SelectMessageQueueByRoundRobin:
    """Every call takes the next queue (``arg`` is ignored)."""

    _next: int = 0

    def select(self, mqs: Sequence[MessageQueue], msg: Any, arg: Any) -> MessageQueue:
        """Return the next queue in turn."""
        mq = mqs[self._next % len(mqs)]
        self._next += 1
        return mq


@implementer(IMessageQueueSelector)
@attrs.define
class SelectMessageQueueByRandom:
    """A random queue (Java ``SelectMessageQueueByRandom``)."""

    rng: random.Random = attrs.Factory(random.Random)

    def select(self, mqs: Sequence[MessageQueue], msg: Any, arg: Any) -> MessageQueue:
        """Return a random queue."""
        return mqs[self.rng.randrange(len(mqs))]

"""Runtime counters of one broker: puts, gets, TPS, per-topic put counts.

Java counterparts: ``BrokerStatsManager`` and ``StoreStatsService``, reduced to what tools read.

The hot paths pay a couple of integer increments and no allocation per message:

* puts are counted by a store arrival listener (:meth:`BrokerStats.on_arrival`, one call per record
  dispatched to a consume queue): the total and the topic's counter go up by one; bytes put are
  the growth of the commit log since the store started (no per-message work at all);
* gets are counted once per answered PULL_MESSAGE by :class:`CountingPullProcessor`, which wraps
  the pull processor: a FOUND answer adds its record count (one 4-byte read per record of the body)
  and its body length, every other answer counts as a miss.

Rates (``putTps``, ``getTransferedTps``, ...) come from samples of the counters taken at most once
a second, lazily: by every read of the figures, by every pull answer and by every 1024th put. There
is no timer. A rate over a window of W seconds compares the counters now with the newest sample at
least W seconds old (or the first sample, taken at boot), so with sparse traffic a rate is the
average since that sample. "Today"/"yesterday" counters roll over at the first sample after local
midnight, like Java's morning snapshots.
"""

from __future__ import annotations

import bisect
import os
import struct
import time
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from rmq.common.asyncutil import now_ms
from rmq.remoting.codes import ResponseCode
from rmq.remoting.command import RemotingCommand
from rmq.remoting.interfaces import IRemotingConnection, IRequestProcessor

#: Rate windows in seconds (Java prints the 10 s, 1 min and 10 min rates).
TPS_WINDOWS = (10, 60, 600)
_KEEP_S = 660.0
_SIZE = struct.Struct(">i")
_SAMPLE_EVERY_PUTS = 1023  # mask: sample on every 1024th put


@attrs.define
class _Sample:
    """The counters at one moment (seconds since the epoch)."""

    at: float
    puts: int
    got_msgs: int
    found: int
    missed: int
    groups: dict[str, int]


class BrokerStats:
    """Counters of one broker since it started.

    ``store_max_phy`` returns the commit log's end offset (bytes put are its growth since
    :meth:`store_started`).
    """

    def __init__(self, clock: IReactorTime, store_max_phy: Callable[[], int] | None = None) -> None:
        self._clock = clock
        self._store_max_phy = store_max_phy or (lambda: 0)
        self.boot_timestamp_ms = now_ms(clock)
        #: Messages put (records dispatched to a consume queue) since boot.
        self.put_total = 0
        #: Messages handed to consumers in FOUND pull answers since boot.
        self.get_total = 0
        #: Bytes of the records handed to consumers since boot.
        self.get_bytes = 0
        #: PULL_MESSAGE answers with messages / without (NOT_FOUND, RETRY, OFFSET_MOVED, ...).
        self.get_found = 0
        self.get_missed = 0
        self.topic_puts: dict[str, int] = {}
        #: Messages pulled per consumer group (for GET_CONSUME_STATS' consumeTps).
        self.group_gets: dict[str, int] = {}
        #: Per ``topic@group``: [messages, bytes, FOUND answers] pulled (Java's GROUP_GET_NUMS /
        #: GROUP_GET_SIZE stats items, read by VIEW_BROKER_STATS_DATA).
        self.topic_group_gets: dict[str, list[int]] = {}
        #: Called after each new sample (at most once a second; admin_ops' stats windows).
        self.sample_listeners: list[Callable[[], None]] = []
        self._phy_base: int | None = None
        self._started = False
        now = clock.seconds()
        self._samples: list[_Sample] = [_Sample(now, 0, 0, 0, 0, {})]
        self._day = self._local_day(now)
        self.put_today_morning = 0
        self.get_today_morning = 0
        self.put_yesterday_morning = 0
        self.get_yesterday_morning = 0

    # -- hot paths ------------------------------------------------------------------------

    def on_arrival(self, topic: str, queue_id: int, queue_offset: int, tags_code: int) -> None:
        """Store arrival listener: one message put into ``topic``."""
        total = self.put_total = self.put_total + 1
        puts = self.topic_puts
        puts[topic] = puts.get(topic, 0) + 1
        if not total & _SAMPLE_EVERY_PUTS:
            self.maybe_sample()

    def pull_answered(
        self,
        response: RemotingCommand | None,
        group: str | None = None,
        topic: str | None = None,
    ) -> RemotingCommand | None:
        """Count one PULL_MESSAGE answer of ``group`` on ``topic`` (returned unchanged, for a
        callback)."""
        if response is None:
            return None
        if response.code == ResponseCode.SUCCESS and response.body:
            body = response.body
            end = len(body)
            pos = n = 0
            unpack = _SIZE.unpack_from
            while pos + 4 <= end:
                size = unpack(body, pos)[0]
                if size <= 0:
                    break
                pos += size
                n += 1
            self.get_total += n
            if group is not None:
                gets = self.group_gets
                gets[group] = gets.get(group, 0) + n
                if topic is not None:
                    key = f"{topic}@{group}"
                    item = self.topic_group_gets.get(key)
                    if item is None:
                        item = self.topic_group_gets[key] = [0, 0, 0]
                    item[0] += n
                    item[1] += end
                    item[2] += 1
            self.get_bytes += end
            self.get_found += 1
        else:
            self.get_missed += 1
        self.maybe_sample()
        return response

    # -- lifecycle ------------------------------------------------------------------------

    def store_started(self, add_listener: Callable[[Any], None] | None = None) -> None:
        """The store has started: remember the commit log's end, start counting puts."""
        if self._started:
            return
        self._started = True
        self._phy_base = self._store_max_phy()
        if add_listener is not None:
            add_listener(self.on_arrival)

    @property
    def put_bytes(self) -> int:
        """Bytes appended to the commit log since the store started."""
        if self._phy_base is None:
            return 0
        return max(0, self._store_max_phy() - self._phy_base)

    # -- samples and rates ----------------------------------------------------------------

    @staticmethod
    def _local_day(seconds: float) -> tuple[int, int, int]:
        t = time.localtime(seconds)
        return (t.tm_year, t.tm_mon, t.tm_mday)

    def _current(self, now: float) -> _Sample:
        return _Sample(
            now, self.put_total, self.get_total, self.get_found, self.get_missed, self.group_gets
        )

    def maybe_sample(self) -> None:
        """Record the counters if the last sample is at least one second old; roll the day."""
        now = self._clock.seconds()
        if now - self._samples[-1].at < 1.0:
            return
        sample = self._current(now)
        sample.groups = dict(self.group_gets)
        self._samples.append(sample)
        day = self._local_day(now)
        if day != self._day:
            self._day = day
            self.put_yesterday_morning = self.put_today_morning
            self.get_yesterday_morning = self.get_today_morning
            self.put_today_morning = self.put_total
            self.get_today_morning = self.get_total
        # Drop samples nobody needs: keep the newest one older than the largest window.
        cutoff = now - _KEEP_S
        times = [s.at for s in self._samples]
        i = bisect.bisect_right(times, cutoff)
        if i > 1:
            del self._samples[: i - 1]
        for listener in self.sample_listeners:
            listener()

    def rates(self, window_s: float) -> dict[str, float]:
        """Per-second rates over the last ``window_s`` seconds (see the module docstring)."""
        now = self._clock.seconds()
        base = self._base(now, window_s)
        cur = self._current(now)
        # At least one second: right after boot a handful of puts is not "thousands per second".
        span = max(now - base.at, 1.0)
        found = (cur.found - base.found) / span
        missed = (cur.missed - base.missed) / span
        return {
            "put": (cur.puts - base.puts) / span,
            "get_transfered": (cur.got_msgs - base.got_msgs) / span,
            "found": found,
            "missed": missed,
            "total": found + missed,
        }

    def _base(self, now: float, window_s: float) -> _Sample:
        target = now - window_s
        for s in reversed(self._samples):
            if s.at <= target:
                return s
        return self._samples[0]

    def group_tps(self, group: str, window_s: float = 60.0) -> float:
        """Messages pulled per second by ``group`` over the last ``window_s`` seconds."""
        self.maybe_sample()
        now = self._clock.seconds()
        base = self._base(now, window_s)
        span = max(now - base.at, 1.0)
        return (self.group_gets.get(group, 0) - base.groups.get(group, 0)) / span

    def tps_text(self, name: str) -> str:
        """Java's form: the 10 s, 1 min and 10 min rates separated by spaces."""
        return " ".join(_java_double(self.rates(w)[name]) for w in TPS_WINDOWS)

    # -- reports --------------------------------------------------------------------------

    def runtime_text(self) -> str:
        """``[ d days, h hours, m minutes, s seconds ]`` since boot (Java's ``runtime``)."""
        ms = max(0, now_ms(self._clock) - self.boot_timestamp_ms)
        secs = ms // 1000
        days, rest = divmod(secs, 86400)
        hours, rest = divmod(rest, 3600)
        minutes, seconds = divmod(rest, 60)
        return f"[ {days} days, {hours} hours, {minutes} minutes, {seconds} seconds ]"

    def runtime_table(self) -> dict[str, str]:
        """The counter part of GET_BROKER_RUNTIME_INFO (strings, Java's key names)."""
        self.maybe_sample()
        puts = self.put_total
        put_bytes = self.put_bytes
        table = {
            "msgPutTotalTodayNow": str(puts),
            "msgGetTotalTodayNow": str(self.get_total),
            "msgPutTotalTodayMorning": str(self.put_today_morning),
            "msgGetTotalTodayMorning": str(self.get_today_morning),
            "msgPutTotalYesterdayMorning": str(self.put_yesterday_morning),
            "msgGetTotalYesterdayMorning": str(self.get_yesterday_morning),
            "putTps": self.tps_text("put"),
            "getFoundTps": self.tps_text("found"),
            "getMissTps": self.tps_text("missed"),
            "getTotalTps": self.tps_text("total"),
            "getTransferedTps": self.tps_text("get_transfered"),
            "putMessageTimesTotal": str(puts),
            "putMessageSizeTotal": str(put_bytes),
            "putMessageAverageSize": _java_double(put_bytes / puts if puts else 0.0),
            "getMessageTransferedBytesTotal": str(self.get_bytes),
            "bootTimestamp": str(self.boot_timestamp_ms),
            "runtime": self.runtime_text(),
        }
        for topic, n in sorted(self.topic_puts.items()):
            table[f"topicPutNums_{topic}"] = str(n)
        return table


def _java_double(value: float) -> str:
    """A double as Java's ``Double.toString`` writes ordinary values (``0.0``, ``12.5``)."""
    text = repr(float(value))
    return text if ("." in text or "e" in text or "n" in text) else text + ".0"


def disk_figures(path: str) -> tuple[float, str] | None:
    """``(used ratio, "Total : X GiB, Free : Y GiB.")`` of the file system holding ``path``."""
    probe = path
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return None
        probe = parent
    try:
        st = os.statvfs(probe or ".")
    except OSError:
        return None
    total = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize
    if total <= 0:
        return None
    ratio = round((total - free) / total, 2)
    gib = 1024.0**3
    return ratio, f"Total : {total / gib:.1f} GiB, Free : {free / gib:.1f} GiB."


@implementer(IRequestProcessor)
class CountingPullProcessor:
    """Wraps the PULL_MESSAGE processor and counts every answer in a :class:`BrokerStats`."""

    def __init__(self, inner: IRequestProcessor, stats: BrokerStats) -> None:
        self.inner = inner
        self.stats = stats

    def process_request(
        self, connection: IRemotingConnection, request: RemotingCommand
    ) -> RemotingCommand | None | Deferred[RemotingCommand | None]:
        """Delegate, then count the answer when it exists."""
        result = self.inner.process_request(connection, request)
        group = request.ext_fields.get("consumerGroup")
        topic = request.ext_fields.get("topic")
        if isinstance(result, Deferred):
            return result.addCallback(self.stats.pull_answered, group, topic)
        return self.stats.pull_answered(result, group, topic)


def prometheus_text(stats: BrokerStats, labels: dict[str, str]) -> bytes:
    """The counters in the Prometheus text exposition format (version 0.0.4)."""
    label_text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(labels.items()))
    base = "{" + label_text + "}" if label_text else ""
    stats.maybe_sample()
    lines: list[str] = []

    def metric(name: str, kind: str, doc: str, value: float, extra: str = "") -> None:
        lines.append(f"# HELP {name} {doc}")
        lines.append(f"# TYPE {name} {kind}")
        lines.append(f"{name}{_labels(base, extra)} {value}")

    metric("rmq_broker_put_messages_total", "counter", "Messages put since boot.", stats.put_total)
    metric("rmq_broker_put_bytes_total", "counter", "Commit-log bytes put.", stats.put_bytes)
    metric("rmq_broker_get_messages_total", "counter", "Messages pulled.", stats.get_total)
    metric("rmq_broker_get_bytes_total", "counter", "Bytes pulled.", stats.get_bytes)
    metric("rmq_broker_pull_found_total", "counter", "Pull answers with messages.", stats.get_found)
    metric("rmq_broker_pull_miss_total", "counter", "Pull answers without.", stats.get_missed)
    rates = stats.rates(TPS_WINDOWS[0])
    metric("rmq_broker_put_tps", "gauge", "Puts per second over 10 s.", rates["put"])
    metric(
        "rmq_broker_get_tps",
        "gauge",
        "Messages pulled per second over 10 s.",
        rates["get_transfered"],
    )
    metric(
        "rmq_broker_boot_timestamp_seconds",
        "gauge",
        "Broker start time.",
        stats.boot_timestamp_ms / 1000.0,
    )
    lines.append("# HELP rmq_broker_topic_put_messages_total Messages put per topic.")
    lines.append("# TYPE rmq_broker_topic_put_messages_total counter")
    for topic, n in sorted(stats.topic_puts.items()):
        extra = f'topic="{_escape_label(topic)}"'
        lines.append(f"rmq_broker_topic_put_messages_total{_labels(base, extra)} {n}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _labels(base: str, extra: str) -> str:
    if not extra:
        return base
    if not base:
        return "{" + extra + "}"
    return base[:-1] + "," + extra + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metrics_resource(stats: BrokerStats, labels: dict[str, str]) -> Any:
    """A ``twisted.web`` resource answering ``GET /metrics`` with :func:`prometheus_text`.

    Mount it with ``Site(metrics_resource(...))`` on any endpoint (see ``docs/metrics.md``).
    """
    from twisted.web.resource import Resource

    class MetricsPage(Resource):
        isLeaf = True  # noqa: N815 (twisted.web's name)

        def render_GET(self, request: Any) -> bytes:  # noqa: N802 (twisted.web's name)
            request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
            return prometheus_text(stats, labels)

    root = Resource()
    root.putChild(b"metrics", MetricsPage())
    return root


def metrics_service(stats: BrokerStats, labels: dict[str, str], endpoint: Any) -> Any:
    """A ``StreamServerEndpointService`` serving :func:`metrics_resource` on ``endpoint``."""
    from twisted.application.internet import StreamServerEndpointService
    from twisted.web.server import Site

    site = Site(metrics_resource(stats, labels))
    site.displayTracebacks = False
    return StreamServerEndpointService(endpoint, site)

"""NameServer addresses from an HTTP endpoint (Java ``TopAddressing``), fetched with Agent.

The body of a GET is the address list (``"host:port;host:port"``); whitespace is trimmed.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.client import Agent, readBody
from twisted.web.iweb import IAgent

from rmq.common.asyncutil import deferred_api
from rmq.common.errors import MQClientError


class NamesrvAddressFetcher:
    """Fetches the NameServer list from ``url`` at start and every ``interval`` seconds.

    ``on_change(addr)`` is called whenever the fetched list differs from the last one.
    """

    log = Logger()

    def __init__(
        self,
        url: str,
        clock: object,
        on_change: Callable[[str], None],
        *,
        agent: IAgent | None = None,
        interval: float = 120.0,
        timeout: float = 3.0,
    ) -> None:
        self.url = url
        self.clock = clock
        self.agent: IAgent = agent if agent is not None else Agent(clock)  # type: ignore[arg-type]
        self.on_change = on_change
        self.interval = interval
        self.timeout = timeout
        self.current: str | None = None
        self._loop: LoopingCall | None = None

    @deferred_api
    async def fetch(self) -> str:
        """Fire with the trimmed address list; MQClientError on a non-200 or empty answer."""
        d = self.agent.request(b"GET", self.url.encode("ascii"))
        d.addTimeout(self.timeout, self.clock)  # type: ignore[arg-type]
        response = await d
        body = await readBody(response)
        text = body.decode("utf-8", "replace").strip()
        if response.code != 200 or not text:
            raise MQClientError(f"NameServer address endpoint {self.url} answered {response.code}")
        if text != self.current:
            self.current = text
            self.on_change(text)
        return text

    def _tick(self) -> Deferred[None]:
        d = self.fetch()

        def failed(f: object) -> None:
            self.log.warn("Fetching NameServer addresses from {url} failed: {f}", url=self.url, f=f)

        return d.addCallbacks(lambda _: None, failed)

    def start(self) -> Deferred[str]:
        """Fetch now (the Deferred fails if this first fetch fails), then every ``interval``."""
        d = self.fetch()

        def started(addr: str) -> str:
            self._loop = LoopingCall(self._tick)
            self._loop.clock = self.clock  # type: ignore[assignment]
            self._loop.start(self.interval, now=False)
            return addr

        return d.addCallback(started)

    def stop(self) -> None:
        """Stop the periodic fetch."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

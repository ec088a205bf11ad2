"""A slave copies its master's metadata every 10 s (protocol §5.11, Java ``SlaveSynchronize``).

GET_ALL_TOPIC_CONFIG (21), GET_ALL_CONSUMER_OFFSET (43), GET_ALL_DELAY_OFFSET (45) and
GET_ALL_SUBSCRIPTIONGROUP_CONFIG (201), no header; the bodies are the master's config JSON and are
loaded into the slave's tables, which are then persisted like local changes. The master's
remoting address comes from the REGISTER_BROKER answer (``masterAddr``); while it is unknown the
slave registers again every period (rmq otherwise re-registers only on a data-version change).

rmq asks the master's main port for all four (Java sends GET_ALL_TOPIC_CONFIG to the VIP port,
main − 2; a Java master answers it on both ports).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from rmq.broker.ha import HAService
from rmq.common.asyncutil import deferred_api, log_failure
from rmq.remoting.codes import RequestCode, ResponseCode
from rmq.remoting.command import new_request

SYNC_INTERVAL_S = 10.0
DELAY_OFFSET_FILE = "delayOffset.json"


class SlaveSynchronize:
    """Periodic metadata copy from the master (a ``Broker.components`` entry of a slave)."""

    log = Logger()

    def __init__(self, broker: Any, ha: HAService, interval: float = SYNC_INTERVAL_S) -> None:
        self.broker = broker
        self.ha = ha
        self.interval = interval
        self._loop: LoopingCall | None = None
        self._running: Deferred[None] | None = None
        #: Completed sync rounds (each table that answered was loaded).
        self.rounds = 0

    def start(self) -> Deferred[None]:
        """Start the 10 s loop; a round also runs as soon as the master becomes known."""
        loop = LoopingCall(self._tick)
        loop.clock = self.broker.clock
        loop.start(self.interval, now=False).addErrback(log_failure("slave sync"))
        self._loop = loop
        self.ha.master_listeners.append(self._tick)
        return succeed(None)

    def stop(self) -> Deferred[None]:
        """Stop the loop and wait for a running round."""
        if self._tick in self.ha.master_listeners:
            self.ha.master_listeners.remove(self._tick)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        running = self._running
        if running is None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        running.addBoth(lambda _: d.callback(None))
        return d

    def _tick(self) -> None:
        if self._running is not None:
            return
        d = self.sync_all()
        self._running = d

        def done(result: object) -> None:
            self._running = None

        d.addBoth(done)

    @deferred_api
    async def sync_all(self) -> None:
        """One round: learn the master (registering if needed), then copy the four tables."""
        broker = self.broker
        if not self.ha.master_addr and broker.registration.active:
            if broker.registration.has_namesrv():
                await broker.registration.register_all()
        master = self.ha.master_addr
        if not master:
            return
        tables: list[tuple[int, Any]] = [
            (RequestCode.GET_ALL_TOPIC_CONFIG, broker.topics),
            (RequestCode.GET_ALL_CONSUMER_OFFSET, broker.offsets),
            (RequestCode.GET_ALL_DELAY_OFFSET, self._delay_table()),
            (RequestCode.GET_ALL_SUBSCRIPTIONGROUP_CONFIG, broker.groups),
        ]
        for code, table in tables:
            if table is None:
                continue
            try:
                response = await broker.registration.client.invoke(master, new_request(code), 3.0)
            except Exception as e:
                self.log.warn(
                    "Slave sync {code} from {master} failed: {error}",
                    code=code,
                    master=master,
                    error=e,
                )
                return
            if response.code != ResponseCode.SUCCESS or not response.body:
                continue
            try:
                table.decode(response.body)
            except ValueError as e:
                self.log.warn("Slave sync {code}: bad body: {error}", code=code, error=e)
                continue
            broker.persister.request(table)
        self.rounds += 1

    def _delay_table(self) -> Any:
        for table in self.broker.tables:
            if getattr(table, "file_name", None) == DELAY_OFFSET_FILE:
                return table
        return None

"""HA benchmark on loopback, one process: ``python bench/ha_bench.py [--count N] [--file-store]``.

A NameServer, a master and a SLAVE broker (memory stores, or file stores with --file-store) share
one reactor with the sending client, so every figure includes the client's and both brokers' CPU:
  * 1 KiB SEND_MESSAGE_V2, one sender waiting for each answer, and 64 concurrent senders, under
    ASYNC_MASTER and SYNC_MASTER (the answer waits for the slave's acknowledgement);
  * catch-up: a fresh slave replicating 64 MiB already stored on the master, MiB/s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, reactor  # noqa: E402
from twisted.internet.endpoints import TCP4ServerEndpoint  # noqa: E402

from rmq.broker.config import configs_from_properties  # noqa: E402
from rmq.broker.service import BrokerService, build_broker_service  # noqa: E402
from rmq.common.message import BrokerMessage  # noqa: E402
from rmq.namesrv.config import NamesrvConfig  # noqa: E402
from rmq.namesrv.service import build_namesrv_service  # noqa: E402
from rmq.remoting.client import RemotingClient, tcp_endpoint_factory  # noqa: E402
from rmq.remoting.codes import RequestCode  # noqa: E402
from rmq.remoting.command import RemotingCommand, new_request  # noqa: E402

LOOPBACK = "127.0.0.1"


def send(topic: str, body: bytes) -> RemotingCommand:
    return new_request(
        RequestCode.SEND_MESSAGE_V2,
        {"a": "PG", "b": topic, "c": "TBW102", "d": 4, "e": 0, "f": 0, "g": 1, "h": 0},
        body,
    )


async def pause(seconds: float) -> None:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)  # type: ignore[attr-defined]
    await d


async def until(predicate: Any) -> None:
    while not predicate():
        await pause(0.001)


async def broker(tmp: str, namesrv: str, role: str, file_store: bool) -> BrokerService:
    config, store_config = configs_from_properties(
        {
            "brokerIP1": LOOPBACK,
            "listenPort": "0",
            "listenInterface": LOOPBACK,
            "storePathRootDir": tempfile.mkdtemp(dir=tmp),
            "namesrvAddr": namesrv,
            "brokerRole": role,
            "brokerId": "1" if role == "SLAVE" else "0",
        }
    )
    store = None
    if file_store:
        from rmq.store.filestore import FileMessageStore

        store = FileMessageStore(store_config, reactor, reactor=reactor)
    service = build_broker_service(
        config,
        TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK),
        reactor,
        store=store,
        store_config=store_config,
        client_endpoint_factory=tcp_endpoint_factory(reactor),
        ha_endpoint=TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK),
    )
    service.startService()
    await service.when_started()
    return service


async def main(count: int, file_store: bool) -> None:
    tmp = tempfile.mkdtemp(prefix="rmq-ha-bench-")
    nsc = NamesrvConfig(
        rocketmq_home=tmp,
        kv_config_path=os.path.join(tmp, "kv.json"),
        listen_port=0,
        bind_address=LOOPBACK,
    )
    ns = build_namesrv_service(nsc, TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK), reactor)
    ns.startService()
    port = await ns.when_listening()
    namesrv = f"{LOOPBACK}:{getattr(port.getHost(), 'port', 0)}"
    client = RemotingClient(reactor, tcp_endpoint_factory(reactor))
    body = b"x" * 1024
    try:
        for role in ("ASYNC_MASTER", "SYNC_MASTER"):
            master = await broker(tmp, namesrv, role, file_store)
            slave = await broker(tmp, namesrv, "SLAVE", file_store)
            ha = master.broker.ha
            await until(lambda: bool(ha.connections))  # noqa: B023
            addr = master.broker.identity.broker_addr
            await client.invoke(addr, send("B", body))
            t = time.perf_counter()
            for _ in range(count):
                r = await client.invoke(addr, send("B", body))
                assert r.code == 0, r
            dt = time.perf_counter() - t
            print(
                f"{role}: {count} sequential 1 KiB sends in {dt:.2f} s = {count / dt:.0f} msg/s "
                f"({dt / count * 1e3:.2f} ms each)"
            )

            async def worker(addr: str = addr) -> None:
                for _ in range(count // 64):
                    r = await client.invoke(addr, send("B", body))
                    assert r.code == 0, r

            t = time.perf_counter()
            await defer.gatherResults([defer.Deferred.fromCoroutine(worker()) for _ in range(64)])
            dt = time.perf_counter() - t
            n = count // 64 * 64
            print(f"{role}: {n} sends by 64 concurrent senders in {dt:.2f} s = {n / dt:.0f} msg/s")
            await slave.stopService()
            await master.stopService()
        master = await broker(tmp, namesrv, "ASYNC_MASTER", file_store)
        store = master.broker.store
        for i in range(16384):
            store.put_message(BrokerMessage(topic="C", queue_id=i % 4, body=b"y" * 4000))
        total = store.get_max_phy_offset()
        t = time.perf_counter()
        slave = await broker(tmp, namesrv, "SLAVE", file_store)
        await until(lambda: slave.broker.store.get_max_phy_offset() >= total)
        dt = time.perf_counter() - t
        print(
            f"catch-up: {total / 2**20:.1f} MiB (16384 records) replicated to a new slave in "
            f"{dt:.2f} s = {total / 2**20 / dt:.0f} MiB/s (includes the slave's start)"
        )
        await slave.stopService()
        await master.stopService()
    finally:
        await client.close()
        await ns.stopService()
        shutil.rmtree(tmp, ignore_errors=True)


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--file-store", action="store_true")
    args = parser.parse_args()

    def go() -> None:
        d = defer.Deferred.fromCoroutine(main(args.count, args.file_store))
        d.addErrback(lambda f: f.printTraceback())
        d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    reactor.callWhenRunning(go)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    run()

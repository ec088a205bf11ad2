"""Run a real rmq NameServer + Broker inside your own reactor, for tests (like ``treq.testing``).

::

    from rmq.testing import start_local_cluster

    class MyTests(twisted.trial.unittest.TestCase):
        async def test_roundtrip(self) -> None:
            cluster = await start_local_cluster()
            self.addCleanup(cluster.stop)
            ...  # point a producer/consumer at cluster.namesrv_addr

Both servers listen on ephemeral loopback ports (``127.0.0.1:0``), keep their files under a
temporary directory (removed by :meth:`LocalCluster.stop` unless you passed ``data_dir``), and use
the memory message store unless ``file_store=True``. No JVM, Docker or fixed port is needed. See
``docs/testing.md``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.logger import Logger

from rmq.broker.config import configs_from_properties
from rmq.broker.service import Broker, BrokerService, build_broker_service
from rmq.common.asyncutil import deferred_api, global_reactor
from rmq.namesrv.config import NamesrvConfig
from rmq.namesrv.service import NamesrvService, build_namesrv_service
from rmq.remoting.client import tcp_endpoint_factory
from rmq.store.interfaces import IMessageStore

__all__ = ["LocalCluster", "start_local_cluster"]

_log = Logger(namespace="rmq.testing")

LOOPBACK = "127.0.0.1"

#: Store settings of test clusters; a caller's ``broker_properties`` override them. Small
#: commit-log and index files instead of RocketMQ's 1 GiB preallocated log and 420 MB index, so
#: a suite of file-store tests does not fill the disk; and no reaction to the host's disk usage
#: short of a completely full disk, so a test neither has its puts refused nor its files
#: cleaned away because some other program filled the machine's disk.
TEST_STORE_PROPERTIES: Mapping[str, str] = {
    "mappedFileSizeCommitLog": str(16 * 1024 * 1024),
    "maxHashSlotNum": "100000",
    "maxIndexNum": "400000",
    "diskMaxUsedSpaceRatio": "100",
    "diskSpaceCleanForciblyRatio": "1.0",
    "diskSpaceWarningLevelRatio": "1.0",
}


@attrs.define(eq=False)
class LocalCluster:
    """A running NameServer and one master Broker.

    ``namesrv_addr`` and ``broker_addr`` are ``"127.0.0.1:<port>"``; ``broker`` gives access to
    the broker's managers and store (e.g. ``cluster.broker.topics``) for assertions.
    """

    namesrv_addr: str
    broker_addr: str
    namesrv_service: NamesrvService
    broker_service: BrokerService
    data_dir: str
    _remove_dir: bool = False
    _stopped: bool = False

    @property
    def broker(self) -> Broker:
        """The broker's domain objects (topics, offsets, consumers, store, ...)."""
        return self.broker_service.broker

    @property
    def store(self) -> IMessageStore:
        """The broker's message store."""
        return self.broker.store

    def stop(self) -> Deferred[None]:
        """Stop the broker (unregistering it), then the NameServer; remove a temp data dir.

        Fires when every port and connection is closed. Calling it twice is harmless.
        """
        return self._stop()

    @deferred_api
    async def _stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            await self.broker_service.stopService()
        finally:
            await self.namesrv_service.stopService()
            if self._remove_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)


def start_local_cluster(
    reactor: Any = None,
    *,
    data_dir: str | None = None,
    file_store: bool = False,
    broker_properties: Mapping[str, str] | None = None,
    store: IMessageStore | None = None,
) -> Deferred[LocalCluster]:
    """Start a NameServer and a Broker on ephemeral loopback ports in ``reactor``.

    ``broker_properties`` are broker.conf keys (e.g. ``{"defaultTopicQueueNums": "4"}``);
    ``file_store=True`` uses the commit-log store under ``data_dir`` (or a temp dir) instead of
    the memory store; ``store`` injects any IMessageStore. Fires with a :class:`LocalCluster` once
    the broker has registered with the NameServer.
    """
    return _start(reactor, data_dir, file_store, dict(broker_properties or {}), store)


@deferred_api
async def _start(
    reactor: Any,
    data_dir: str | None,
    file_store: bool,
    broker_properties: dict[str, str],
    store: IMessageStore | None,
) -> LocalCluster:
    if reactor is None:
        reactor = global_reactor()
    remove_dir = data_dir is None
    root = data_dir if data_dir is not None else tempfile.mkdtemp(prefix="rmq-testing-")
    namesrv_config = NamesrvConfig(
        rocketmq_home=root,
        kv_config_path=os.path.join(root, "namesrv", "kvConfig.json"),
        listen_port=0,
        bind_address=LOOPBACK,
    )
    namesrv = build_namesrv_service(
        namesrv_config, TCP4ServerEndpoint(reactor, 0, interface=LOOPBACK), reactor
    )
    namesrv.startService()
    try:
        port = await namesrv.when_listening()
        namesrv_addr = f"{LOOPBACK}:{getattr(port.getHost(), 'port', 0)}"
        props = {
            "brokerIP1": LOOPBACK,
            "listenPort": "0",
            "listenInterface": LOOPBACK,
            "storePathRootDir": os.path.join(root, "store"),
            "namesrvAddr": namesrv_addr,
            **TEST_STORE_PROPERTIES,
        }
        props.update(broker_properties)
        broker_config, store_config = configs_from_properties(props, "rmq.testing")
        if store is None and file_store:
            store = _file_store(reactor, store_config)
        service = build_broker_service(
            broker_config,
            TCP4ServerEndpoint(reactor, 0, interface=broker_config.listen_interface),
            reactor,
            store=store,
            store_config=store_config,
            client_endpoint_factory=tcp_endpoint_factory(reactor),
        )
        service.startService()
        try:
            await service.when_started()
        except BaseException:
            # Undo what the start got through; the start's error is what the caller gets.
            try:
                await service.stopService()
            except Exception:
                _log.failure("Stopping the broker after its failed start failed")
            raise
    except BaseException:
        await namesrv.stopService()
        if remove_dir:
            shutil.rmtree(root, ignore_errors=True)
        raise
    cluster = LocalCluster(
        namesrv_addr=namesrv_addr,
        broker_addr=service.broker.identity.broker_addr,
        namesrv_service=namesrv,
        broker_service=service,
        data_dir=root,
        remove_dir=remove_dir,
    )
    _log.info(
        "Local rmq cluster: NameServer {namesrv}, Broker {broker}",
        namesrv=cluster.namesrv_addr,
        broker=cluster.broker_addr,
    )
    return cluster


def _file_store(reactor: Any, store_config: Any) -> IMessageStore:
    """The commit-log store (imported late: memory-store users never load it)."""
    from rmq.store.filestore import FileMessageStore

    return FileMessageStore(store_config, reactor, reactor=reactor)

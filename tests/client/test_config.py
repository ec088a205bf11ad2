"""NameServer address resolution, the HTTP address endpoint, and client ids."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import resource, server

from rmq.client.config import (
    ClientConfig,
    namesrv_http_url,
    resolve_namesrv_addr,
    split_namesrv_addr,
)
from rmq.client.nsaddr import NamesrvAddressFetcher
from rmq.common.asyncutil import global_reactor
from rmq.common.errors import MQClientError


class ResolveTests(SynchronousTestCase):
    def test_argument_first(self) -> None:
        """The argument wins over the property and the environment."""
        got = resolve_namesrv_addr("a:1", {"rocketmq.namesrv.addr": "b:2"}, {"NAMESRV_ADDR": "c:3"})
        self.assertEqual(got, "a:1")

    def test_property_second(self) -> None:
        """The rocketmq.namesrv.addr property wins over the environment."""
        got = resolve_namesrv_addr(None, {"rocketmq.namesrv.addr": "b:2"}, {"NAMESRV_ADDR": "c:3"})
        self.assertEqual(got, "b:2")

    def test_environment_third(self) -> None:
        """NAMESRV_ADDR is used when nothing else is given."""
        self.assertEqual(resolve_namesrv_addr(None, {}, {"NAMESRV_ADDR": "c:3"}), "c:3")
        self.assertIsNone(resolve_namesrv_addr(None, {}, {}))

    def test_split(self) -> None:
        """Address lists split on ';' and drop blanks."""
        self.assertEqual(split_namesrv_addr(" a:1; b:2;;"), ["a:1", "b:2"])
        self.assertEqual(split_namesrv_addr(None), [])

    def test_http_url(self) -> None:
        """The endpoint URL follows Java's MixAll.getWSAddr."""
        self.assertIsNone(namesrv_http_url({}))
        self.assertEqual(
            namesrv_http_url({"rocketmq.namesrv.domain": "jmenv"}),
            "http://jmenv:8080/rocketmq/nsaddr",
        )
        self.assertEqual(
            namesrv_http_url(
                {"rocketmq.namesrv.domain": "h:81", "rocketmq.namesrv.domain.subgroup": "x"}
            ),
            "http://h:81/rocketmq/x",
        )

    def test_client_id_unique(self) -> None:
        """Default client ids are ip@<unique instance> and differ between instances."""
        a = ClientConfig(client_ip="10.0.0.1").client_id()
        b = ClientConfig(client_ip="10.0.0.1").client_id()
        self.assertTrue(a.startswith("10.0.0.1@"))
        self.assertNotEqual(a, b)
        self.assertEqual(
            ClientConfig(client_ip="1.2.3.4", instance_name="x", unit_name="u").client_id(),
            "1.2.3.4@x@u",
        )


class _Addr(resource.Resource):
    isLeaf = True  # noqa: N815

    def __init__(self) -> None:
        super().__init__()
        self.body = b"127.0.0.1:9876;127.0.0.1:9877\n"
        self.code = 200
        self.paths: list[bytes] = []

    def render_GET(self, request: server.Request) -> bytes:  # noqa: N802
        self.paths.append(request.path)
        request.setResponseCode(self.code)
        return self.body


class HttpEndpointTests(TestCase):
    """The fetcher against a real twisted.web server on a loopback ephemeral port."""

    def setUp(self) -> None:
        self.reactor = global_reactor()
        self.res = _Addr()
        site = server.Site(self.res)
        self.port = self.reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        props = {"rocketmq.namesrv.domain": f"127.0.0.1:{self.port.getHost().port}"}
        url = namesrv_http_url(props)
        assert url is not None
        self.url = url
        self.changes: list[str] = []

    async def test_fetch_and_refresh(self) -> None:
        """The list is fetched at start, trimmed, refetched on the interval; changes reported."""
        fetcher = NamesrvAddressFetcher(self.url, self.reactor, self.changes.append, interval=0.05)
        self.addCleanup(fetcher.stop)
        addr = await fetcher.start()
        self.assertEqual(addr, "127.0.0.1:9876;127.0.0.1:9877")
        self.assertEqual(self.res.paths, [b"/rocketmq/nsaddr"])
        self.res.body = b"127.0.0.1:1111"
        changed: Deferred[None] = Deferred()
        orig = fetcher.on_change

        def on_change(a: str) -> None:
            orig(a)
            if not changed.called:
                changed.callback(None)

        fetcher.on_change = on_change
        await changed
        self.assertEqual(self.changes, ["127.0.0.1:9876;127.0.0.1:9877", "127.0.0.1:1111"])

    async def test_error_status(self) -> None:
        """A non-200 answer fails the first fetch with MQClientError."""
        self.res.code = 404
        fetcher = NamesrvAddressFetcher(self.url, self.reactor, self.changes.append)
        with self.assertRaises(MQClientError):
            await fetcher.start()
        self.assertEqual(self.changes, [])


class FetcherClockTests(SynchronousTestCase):
    def test_stop_leaves_no_timer(self) -> None:
        """Stopping the fetcher before it ever started is harmless and leaves no timer."""
        clock = Clock()
        f = NamesrvAddressFetcher("http://127.0.0.1:1/x", clock, lambda a: None)
        f.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

"""The twistd plugins are discoverable."""

from __future__ import annotations

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase


class PluginTests(SynchronousTestCase):
    def test_every_tapname_is_discovered(self) -> None:
        """getPlugins(IServiceMaker) yields rmq-namesrv, rmq-broker and rmq-standalone."""
        names = {maker.tapname for maker in getPlugins(IServiceMaker)}
        self.assertTrue({"rmq-namesrv", "rmq-broker", "rmq-standalone"} <= names, names)

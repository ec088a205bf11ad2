"""A test case base for running ``rmq-admin`` commands against a real local cluster."""

from __future__ import annotations

import io

from twisted.trial.unittest import TestCase

from rmq.admin.cli import run
from rmq.common.asyncutil import global_reactor
from rmq.testing import LocalCluster, start_local_cluster


class Result:
    """Exit status and captured output of one command."""

    def __init__(self, status: int, out: str, err: str) -> None:
        self.status = status
        self.out = out
        self.err = err


class AdminCliCase(TestCase):
    """Starts a NameServer + Broker (rmq.testing) and runs CLI commands against it."""

    timeout = 60

    async def start(self) -> LocalCluster:
        self.reactor = global_reactor()
        cluster = await start_local_cluster(self.reactor)
        self.addCleanup(cluster.stop)
        self.cluster = cluster
        return cluster

    async def admin(self, *argv: str, environ: dict[str, str] | None = None) -> Result:
        """Run ``rmq-admin argv`` against the cluster (``-n`` added unless ``environ`` given)."""
        out, err = io.StringIO(), io.StringIO()
        args = list(argv)
        if environ is None and "-n" not in args:
            args += ["-n", self.cluster.namesrv_addr]
        status = await run(self.reactor, args, out, err, environ or {})
        return Result(status, out.getvalue(), err.getvalue())

    async def ok(self, *argv: str) -> str:
        """Run a command that must succeed; its output."""
        result = await self.admin(*argv)
        self.assertEqual(result.status, 0, result.err)
        self.assertEqual(result.err, "")
        return result.out

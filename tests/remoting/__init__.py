"""Tests of rmq.remoting."""

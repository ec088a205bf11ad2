"""Integration tests: real loopback sockets, real files."""

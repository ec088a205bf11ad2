"""rmq tests."""

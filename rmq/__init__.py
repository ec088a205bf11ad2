"""rmq: a RocketMQ-compatible messaging system on Twisted."""

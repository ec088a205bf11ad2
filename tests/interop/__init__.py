"""Interoperability tests: the real RocketMQ C++ client (``rocketmq`` 0.4.4) against rmq."""

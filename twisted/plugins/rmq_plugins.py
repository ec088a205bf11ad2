"""twistd plugins for rmq: rmq-namesrv, rmq-broker and rmq-standalone."""

from twisted.application.service import ServiceMaker

rmq_namesrv = ServiceMaker(
    "rmq NameServer", "rmq.namesrv.tap", "RocketMQ-compatible routing registry", "rmq-namesrv"
)
rmq_broker = ServiceMaker(
    "rmq Broker", "rmq.broker.tap", "RocketMQ-compatible message broker", "rmq-broker"
)
rmq_standalone = ServiceMaker(
    "rmq standalone",
    "rmq.standalone",
    "NameServer and one master Broker in one process",
    "rmq-standalone",
)

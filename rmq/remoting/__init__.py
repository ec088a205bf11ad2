"""RocketMQ remoting: frame codec, header codecs, codes, RemotingProtocol, dispatch, client RPC."""

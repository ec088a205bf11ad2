"""Admin command-line tool speaking RocketMQ remoting."""

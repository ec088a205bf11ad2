"""Small programs that drive the real RocketMQ C++ client (``rocketmq`` 0.4.4) in a child process.

Each script reads its parameters from a JSON file named by ``argv[1]``, writes one JSON event per
line on stdout and takes commands (JSON lines such as ``{"cmd": "stop"}``) on stdin. They import
only the standard library, ``rocketmq`` and :mod:`cppcommon` (this directory), so they run as
plain ``python script.py params.json`` and never import rmq or Twisted.
``tests/support/cpp.py`` spawns them.
"""

"""Packaging for rmq, a RocketMQ-compatible messaging system on Twisted."""

from setuptools import find_packages, setup

setup(
    name="rmq",
    version="0.1.0",
    description="RocketMQ-compatible NameServer, Broker and Deferred-based client on Twisted",
    python_requires=">=3.10",
    packages=[*find_packages(include=["rmq", "rmq.*"]), "twisted.plugins"],
    package_data={"twisted.plugins": ["rmq_plugins.py"]},
    install_requires=[
        "twisted>=23.10",
        "zope.interface>=6.0",
        "attrs>=23.1",
        "pyopenssl",
        "service-identity",
    ],
    extras_require={
        "test": [
            "hypothesis",
            "rocketmq==0.4.4",
            "ruff",
            "mypy<2.5",
            "mypy-zope==1.0.17",
            "coverage",
        ],
    },
    entry_points={"console_scripts": ["rmq-admin=rmq.admin.cli:main"]},
)

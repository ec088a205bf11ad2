"""The NameServer: RouteInfoManager, its request processors and the twistd service."""

"""The Broker: processors, managers, long polling, schedule, transactions, registration."""

"""Kafka adapters: clients, topics, the command gateway and the decider's transactions."""

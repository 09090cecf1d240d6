"""Local provisioning of Kafka and PostgreSQL for development and integration tests."""

from .stack import Endpoints, StackBusy, default_state_dir, provisioned

__all__ = ["Endpoints", "StackBusy", "default_state_dir", "provisioned"]

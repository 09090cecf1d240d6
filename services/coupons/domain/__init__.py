"""Pure domain logic: no I/O, no Kafka, no PostgreSQL."""

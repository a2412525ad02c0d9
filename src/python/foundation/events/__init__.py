"""Domain events: the schema on the wire, the transactional outbox, the relay, consumers."""

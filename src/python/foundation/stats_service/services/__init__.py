"""Stats logic, free of HTTP: counting events, reading and rebuilding aggregates."""

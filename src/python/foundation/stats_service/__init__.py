"""Stats service: Aggregates built from the event stream."""

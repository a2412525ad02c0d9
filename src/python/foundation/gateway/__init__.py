"""Gateway: The public entry point: routing, JWT at the edge, rate limits."""

"""The one-command local stack, embedded servers and the database studio (a developer tool)."""

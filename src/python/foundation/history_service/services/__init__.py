"""History logic, free of HTTP: the timeline and the event stream's effects."""

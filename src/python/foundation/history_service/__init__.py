"""History service: Each user's activity timeline."""

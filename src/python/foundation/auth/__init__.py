"""Token verification (used by every service and the gateway), signing, OAuth providers."""

"""HTTP routers: the thin layer; logic lives in services/."""

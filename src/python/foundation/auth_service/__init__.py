"""Auth service: Accounts, passwords, sessions, tokens, Google and Apple sign-in."""

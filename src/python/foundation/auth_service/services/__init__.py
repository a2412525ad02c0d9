"""Domain logic: accounts, passwords, sessions and tokens. No HTTP here."""

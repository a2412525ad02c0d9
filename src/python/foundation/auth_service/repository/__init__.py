"""SQL lives here: queries over the auth database, one module per table."""

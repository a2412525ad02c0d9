"""Database access: async engine and sessions, declarative bases, migrations, provisioning."""

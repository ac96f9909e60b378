"""Database access: URL resolution, the embedded server, connections, migrations, queries."""

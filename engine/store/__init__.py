"""Where the daemon keeps its state: the Store interface and its SQLite and PostgreSQL backends."""

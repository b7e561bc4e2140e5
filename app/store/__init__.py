"""Qt-free store: the SQLite database (Peewee) and the one place that queries it."""

"""Opening the workspace database: WAL, foreign keys, busy timeout, migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import peewee as pw

from app.store.models import ALL_TABLES, database_proxy

PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 10000,
    "synchronous": "normal",
}


def _migration_1(db: pw.Database) -> None:
    """Initial schema."""
    db.create_tables(ALL_TABLES)


#: Versioned migrations: index i+1 brings the schema to version i+1. Append only.
MIGRATIONS: list[Callable[[pw.Database], None]] = [_migration_1]


def schema_version(db: pw.Database) -> int:
    return int(db.execute_sql("PRAGMA user_version").fetchone()[0])


def migrate(db: pw.Database) -> int:
    """Apply pending migrations; returns the schema version."""
    version = schema_version(db)
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"the workspace database is at schema version {version}, newer than this "
            f"Strata knows ({len(MIGRATIONS)}); please update Strata"
        )
    for number in range(version + 1, len(MIGRATIONS) + 1):
        with db.atomic():
            MIGRATIONS[number - 1](db)
            db.execute_sql(f"PRAGMA user_version = {number}")
    return len(MIGRATIONS)


def open_database(path: str | Path) -> pw.SqliteDatabase:
    """Open (creating and migrating) the SQLite database at ``path``."""
    db = pw.SqliteDatabase(str(path), pragmas=PRAGMAS, timeout=10, check_same_thread=False)
    database_proxy.initialize(db)
    db.connect(reuse_if_open=True)
    migrate(db)
    return db

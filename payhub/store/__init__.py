"""Storage: tables, the group-commit ledger, repositories and Alembic migrations.

SQLite (aiosqlite, WAL, synchronous=FULL) is the embedded default; PostgreSQL (asyncpg)
runs the same code for several hub instances.
"""

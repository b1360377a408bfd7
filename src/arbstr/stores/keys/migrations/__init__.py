"""Piccolo migrations of the key store, applied in order by `arbstr db migrate` (and at startup
when `database.migrate_on_start`). Each module has Piccolo's `forwards()`, which returns the
`MigrationManager` of that step."""

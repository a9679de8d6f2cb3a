"""Create or upgrade the database schema: a short, ordered list of versioned migrations.

`flask --app webapp init-db` (the Procfile's release step) runs `upgrade()`; running it again
changes nothing. A new schema change is one more function appended to MIGRATIONS.
"""

from peewee import DateTimeField, IntegerField, Model

from models import ALL_MODELS, db, utcnow


class SchemaVersion(Model):
    version = IntegerField(primary_key=True)
    applied_at = DateTimeField(default=utcnow)

    class Meta:
        database = db
        table_name = "schema_version"


def _initial(migrator):
    db.create_tables(ALL_MODELS, safe=True)


# (version, description, function taking a playhouse.migrate migrator)
MIGRATIONS = [
    (1, "initial schema", _initial),
]


def current_version() -> int:
    if not SchemaVersion.table_exists():
        return 0
    row = SchemaVersion.select().order_by(SchemaVersion.version.desc()).first()
    return row.version if row else 0


def upgrade() -> list[str]:
    """Apply the migrations not applied yet; return what was applied."""
    from playhouse.migrate import PostgresqlMigrator, SqliteMigrator

    database = db.obj
    migrator_cls = PostgresqlMigrator if "postgres" in type(database).__name__.lower() else SqliteMigrator
    migrator = migrator_cls(database)
    applied = []
    with database.atomic():
        SchemaVersion.create_table(safe=True)
        done = current_version()
        for version, description, apply in MIGRATIONS:
            if version <= done:
                continue
            apply(migrator)
            SchemaVersion.create(version=version)
            applied.append(f"{version}: {description}")
    return applied

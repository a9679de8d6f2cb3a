"""The database connection per request, and the `init-db` command."""

import click
from flask import current_app
from flask.cli import with_appcontext

import schema
from models import db, open_database


def init_app(app):
    open_database(app.config["SERVICE_CONFIG"].database_url)

    @app.before_request
    def _connect():
        db.connect(reuse_if_open=True)

    @app.teardown_request
    def _close(exc):
        if not db.is_closed():
            db.close()

    app.cli.add_command(init_db_command)


@click.command("init-db")
@with_appcontext
def init_db_command():
    """Create or upgrade the database schema (safe to run again)."""
    with db.connection_context():
        applied = schema.upgrade()
    label = current_app.config["SERVICE_CONFIG"].database_label
    if applied:
        click.echo(f"Database ({label}) upgraded: " + "; ".join(applied))
    else:
        click.echo(f"Database ({label}) is up to date (version {schema.MIGRATIONS[-1][0]}).")

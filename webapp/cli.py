"""Admin commands: `flask --app webapp seed-demo | create-user | create-token`."""

import click
from flask.cli import with_appcontext

from models import Account, User, db
from webapp import accounts, demo


def init_app(app):
    for command in (seed_demo, create_user, create_token):
        app.cli.add_command(command)


@click.command("seed-demo")
@with_appcontext
def seed_demo():
    """Create the demo account, its admin and staff users and three articles (idempotent)."""
    config = demo.instance_config()
    with db.connection_context():
        logins = demo.seed(config)
    for email, password, role in logins:
        click.echo(f"  {role:5}  {email}  password: {password}")


@click.command("create-user")
@with_appcontext
@click.argument("email")
@click.option("--password", required=True, help="The new user's password.")
@click.option("--admin", is_flag=True, help="Let the user open Ops (rq-dashboard).")
@click.option("--account", "account_name", default=None, help="Account name (created when missing).")
def create_user(email, password, admin, account_name):
    """Create a user; the account is created when it does not exist."""
    with db.connection_context():
        if User.get_or_none(User.email == email.strip().lower()):
            raise click.ClickException(f"A user with the email {email} already exists.")
        user = accounts.create_user(email, password, account_name=account_name or email, is_admin=admin)
        account = Account.get_by_id(user.account_id)
    click.echo(f"Created {'admin' if admin else 'staff'} user {user.email} in account {account.name!r}.")


@click.command("create-token")
@with_appcontext
@click.argument("email")
@click.option("--name", default="cli", help="A label for the token.")
def create_token(email, name):
    """Print a new API bearer token for EMAIL (only its hash is stored)."""
    with db.connection_context():
        user = User.get_or_none(User.email == email.strip().lower())
        if user is None:
            raise click.ClickException(f"No user with the email {email}.")
        click.echo(accounts.create_token(user, name=name))

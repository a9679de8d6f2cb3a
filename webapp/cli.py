"""Admin commands: `flask --app webapp seed-demo | create-user | create-token | list-tokens | revoke-token |
delete-user | check-models` and the rest."""

import datetime
import time

import click
from flask.cli import with_appcontext

from models import ROLES, Account, Content, User, db, utcnow
from webapp import accounts, demo


def init_app(app):
    for command in (seed_demo, create_user, create_token, list_tokens, revoke_token, delete_user, generate_images,
                    rotate_keys, check_models):
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
@click.option("--role", type=click.Choice(ROLES), default=None,
              help="staff or manager (managers change the settings); default: manager of a new account, else staff.")
def create_user(email, password, admin, account_name, role):
    """Create a user; the account is created when it does not exist."""
    with db.connection_context():
        if User.get_or_none(User.email == email.strip().lower()):
            raise click.ClickException(f"A user with the email {email} already exists.")
        user = accounts.create_user(email, password, account_name=account_name or email, is_admin=admin, role=role)
        account = Account.get_by_id(user.account_id)
    kind = f"{'admin ' if admin else ''}{user.role}"
    click.echo(f"Created {kind} user {user.email} in account {account.name!r}.")


@click.command("create-token")
@with_appcontext
@click.argument("email")
@click.option("--name", default="cli", help="A label for the token.")
@click.option("--expires-days", type=click.IntRange(1, 3650), default=None, help="Expire after this many days.")
def create_token(email, name, expires_days):
    """Print a new API bearer token for EMAIL (only its hash is stored)."""
    with db.connection_context():
        user = _user(email)
        expires = utcnow() + datetime.timedelta(days=expires_days) if expires_days else None
        click.echo(accounts.create_token(user, name=name, expires_at=expires))


@click.command("list-tokens")
@with_appcontext
@click.argument("email")
def list_tokens(email):
    """List EMAIL's API tokens: id, name, created, last used, expiry (never the tokens themselves)."""
    with db.connection_context():
        tokens = accounts.tokens_of(_user(email))
    for token in tokens:
        used = f"last used {token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never used"
        expires = f"expires {token.expires_at:%Y-%m-%d}" if token.expires_at else "no expiry"
        click.echo(f"{token.id}\t{token.name}\tcreated {token.created_at:%Y-%m-%d %H:%M}\t{used}\t{expires}")
    click.echo(f"{len(tokens)} token(s).")


@click.command("revoke-token")
@with_appcontext
@click.argument("token_id", type=int)
def revoke_token(token_id):
    """Revoke (delete) the API token with this id; it stops working at once."""
    with db.connection_context():
        if not accounts.revoke_token(token_id):
            raise click.ClickException(f"No token with id {token_id}.")
    click.echo(f"Revoked token {token_id}.")


@click.command("delete-user")
@with_appcontext
@click.argument("email")
def delete_user(email):
    """Remove a user with its tokens; its sessions end at once."""
    with db.connection_context():
        try:
            accounts.delete_user(_user(email))
        except ValueError as refused:
            raise click.ClickException(str(refused)) from None
    click.echo(f"Deleted user {email.strip().lower()}.")


def _user(email) -> User:
    user = User.get_or_none(User.email == email.strip().lower())
    if user is None:
        raise click.ClickException(f"No user with the email {email}.")
    return user


@click.command("generate-images")
@click.option("--content", "content_id", type=int, required=True, help="The article whose images to generate.")
@click.option("--regenerate", is_flag=True, help="Also make images that are already generated again.")
@click.option("--wait", is_flag=True, help="Show progress until the task ends.")
@with_appcontext
def generate_images(content_id, regenerate, wait):
    """Queue image generation for an article's images, as the Generate Images button does."""
    from jobs.connection import get_redis
    from jobs.errors import AIFunctionError
    from jobs.progress import task_progress
    from jobs.tasks import start_task

    with db.connection_context():
        content = Content.get_or_none(Content.id == content_id)
        if content is None:
            raise click.ClickException(f"No content with id {content_id}.")
        ids = [i.id for i in content.images]
        try:
            started = start_task("generate_images_from_prompts", {"ids": ids, "regenerate": regenerate},
                                 content.account_id)
        except AIFunctionError as exc:
            raise click.ClickException(exc.message) from None
    click.echo(f"Task {started['task_id']}: {len(started['items'])} images queued.")
    for skipped in started["skipped"]:
        click.echo(f"  skipped image {skipped['id']}: {skipped['reason']}")
    if not wait:
        return
    shown = None
    while True:
        with db.connection_context():
            view = task_progress(started["task_id"], content.account_id, get_redis())
        line = f"{view['percent']:3d}%  {view['message']}  " + " ".join(
            f"#{i['id']}:{i['status']}" for i in view["images"])
        if line != shown:
            click.echo(line)
            shown = line
        if view["state"] in ("done", "failed", "canceled"):
            break
        time.sleep(0.5)
    for image in view["images"]:
        if image["error"]:
            click.echo(f"  image {image['id']} failed: {image['error']}")
    if view["totals"]["failed"]:
        raise SystemExit(1)


@click.command("rotate-keys")
@with_appcontext
def rotate_keys():
    """Re-encrypt stored provider keys under the first ENCRYPTION_KEYS entry."""
    from jobs import image_settings

    with db.connection_context():
        count = image_settings.rotate_keys()
    click.echo(f"Re-encrypted {count} stored API key(s).")


@click.command("check-models")
@with_appcontext
def check_models():
    """Read each OpenAI account's model list and keep the shutdown dates it announces."""
    from jobs import model_check

    with db.connection_context():
        report = model_check.check_all()
    for account_id, summary in report:
        click.echo(f"  account {account_id}: {summary}")
    click.echo(f"{len(report)} account(s) checked.")

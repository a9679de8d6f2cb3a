"""The staff site's home page and the health check."""

from flask import Blueprint, g, render_template

from models import Content, Images

bp = Blueprint("pages", __name__)


@bp.route("/")
def index():
    """Dashboard: the account's articles and how many of their images are in each state."""
    contents = list(Content.for_account(g.account_id).order_by(Content.id.desc()).limit(20))
    counts = {}
    if contents:
        rows = (
            Images.for_account(g.account_id)
            .where(Images.content.in_([c.id for c in contents]))
            .select(Images.content, Images.status)
            .tuples()
        )
        for content_id, status in rows:
            counts.setdefault(content_id, {}).setdefault(status, 0)
            counts[content_id][status] += 1
    return render_template("pages/index.html", contents=contents, counts=counts)


@bp.route("/healthz")
def healthz():
    """The app answers; 503 and which dependency is down when the database or Redis is unreachable."""
    checks = {"database": _database_up(), "redis": _redis_up()}
    down = [name for name, up in checks.items() if not up]
    body = {"ok": not down, **{name: "up" if up else "down" for name, up in checks.items()}}
    return body, 503 if down else 200


def _database_up() -> bool:
    from models import db

    try:
        db.execute_sql("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - any failure of the check means "down"
        return False


def _redis_up() -> bool:
    from redis.exceptions import RedisError

    from jobs.connection import get_redis

    try:
        return bool(get_redis().ping())
    except (RedisError, OSError):
        return False


NAV = [
    ("pages.index", "Home"),
    ("articles_page.articles", "Articles"),
    ("images_page.images", "Images"),
    ("runs_page.runs", "Runs"),
    ("usage_page.usage", "Usage"),
    ("settings_page.image_generation", "Settings"),
    ("prompts_page.prompts", "Prompts"),
]


@bp.app_context_processor
def _navigation():
    from flask import current_app

    def nav_links():
        links = [(e, label) for e, label in NAV if e in current_app.view_functions]
        if g.user is not None and g.user.is_manager:
            links.append(("account_page.account", "Account"))
        return links

    return {"nav_links": nav_links}

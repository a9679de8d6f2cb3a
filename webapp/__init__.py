"""The staff web app and JSON API: `create_app()` is the Flask application factory."""

from flask import Flask

from config import load_config


def create_app(test_config=None):
    config = load_config()
    app = Flask(__name__, instance_path=str(config.instance_path), template_folder="../templates")
    app.config.from_mapping(
        SECRET_KEY=config.secret_key,
        SERVICE_CONFIG=config,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.extra["secure_cookies"],
        SESSION_IDLE_SECONDS=config.extra["session_idle_minutes"] * 60,
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        JSON_SORT_KEYS=False,
    )
    if test_config:
        app.config.update(test_config)

    from webapp.assets import check_assets

    check_assets(app)  # no htmx, no working page: refuse to start

    from webapp import (
        account_page,
        api,
        articles_page,
        auth,
        cli,
        csrf,
        db,
        images_page,
        inputs,
        media,
        ops,
        pages,
        prompts_page,
        public,
        runs_page,
        security,
        settings_page,
        usage_page,
        webhooks_page,
    )

    inputs.init_app(app)  # first: route converters are bound as blueprints register
    security.init_app(app)
    db.init_app(app)
    auth.init_app(app)
    csrf.init_app(app)
    cli.init_app(app)
    api.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(articles_page.bp)
    app.register_blueprint(media.bp)
    public.init_app(app)  # /p/<key>.<ext>, login-free
    for page in (images_page, runs_page, usage_page, settings_page, prompts_page, account_page, webhooks_page):
        app.register_blueprint(page.bp)
    ops.init_app(app)
    return app

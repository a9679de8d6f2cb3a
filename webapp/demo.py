"""Demo data for the run command: an account on the offline placeholder provider, two users and
three articles with image prompts. Seeding twice changes nothing."""

import os
import secrets
from pathlib import Path

from flask import current_app

from jobs import image_settings
from models import Account, Content, Images, IntegrationSettings, User, db
from webapp import accounts

ACCOUNT = "Demo"
USERS = [("admin@example.com", "admin"), ("staff@example.com", "staff")]
ARTICLES = [
    (
        "A weekend in Lisbon",
        "Lisbon travel guide: trams, tiles and pastéis",
        "A yellow tram climbing a steep cobbled street at golden hour",
        ["Blue azulejo tiles on an old facade", "Custard tarts on a café counter",
         "View over red roofs to the river from a viewpoint"],
    ),
    (
        "Growing tomatoes on a balcony",
        "Balcony tomatoes: a beginner's guide",
        "Ripe cherry tomatoes in pots on a sunny city balcony",
        ["Seedlings in small pots on a windowsill", "Hands tying a tomato stem to a bamboo cane"],
    ),
    (
        "How espresso is made",
        "Espresso explained: pressure, grind and time",
        "A shot of espresso pouring from a portafilter into a white cup",
        ["Freshly ground coffee in a portafilter", "Latte art in a ceramic cup",
         "An espresso machine pressure gauge close up"],
    ),
]


def instance_config():
    return current_app.config["SERVICE_CONFIG"]


def _logins_file(config) -> Path:
    return config.instance_path / "demo-logins.txt"


def _passwords(config) -> dict:
    """Random demo passwords, made once and kept in instance/ so every run can print them."""
    path = _logins_file(config)
    if path.exists():
        return dict(line.split(" ", 1) for line in path.read_text().splitlines() if " " in line)
    passwords = {email: secrets.token_urlsafe(9) for email, _ in USERS}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("".join(f"{e} {p}\n" for e, p in passwords.items()))
    return passwords


def seed(config) -> list[tuple[str, str, str]]:
    """Create what is missing; return (email, password, role) for the demo logins."""
    passwords = _passwords(config)
    with db.atomic():
        account, _ = Account.get_or_create(name=ACCOUNT)
        for email, role in USERS:
            if not User.get_or_none(User.email == email):
                accounts.create_user(email, passwords[email], account_name=ACCOUNT, is_admin=role == "admin",
                                     role="manager" if role == "admin" else "staff")
        IntegrationSettings.get_or_create(
            account=account,
            integration_type="image_generation",
            defaults={"is_active": True, "config": dict(image_settings.DEFAULTS)},
        )
        for title, meta_title, featured, in_article in ARTICLES:
            if Content.for_account(account.id).where(Content.title == title).exists():
                continue
            content = Content.create(account=account, title=title, meta_title=meta_title)
            Images.create(account=account, content=content, image_type="featured", position=0, prompt=featured)
            for position, prompt in enumerate(in_article, start=1):
                Images.create(account=account, content=content, image_type="in_article",
                              position=position, prompt=prompt)
    return [(email, passwords[email], role) for email, role in USERS]

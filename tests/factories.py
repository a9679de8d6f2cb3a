"""Rows for tests, made through the same code the app uses."""

from jobs import image_settings
from models import Account, Content, Images, db
from webapp import writer


def account_id(name: str) -> int:
    return Account.get(Account.name == name).id


def article(account: int, title="A day at the sea", prompts=("A lighthouse at dusk", "Gulls over waves",
                                                              "A sandy path through dunes"), meta_title=""):
    """An article with a featured prompt and in-article prompts (positions 1..n-1)."""
    images = [{"image_type": "featured", "position": 0, "prompt": prompts[0]}]
    images += [{"image_type": "in_article", "position": n, "prompt": p} for n, p in enumerate(prompts[1:], start=1)]
    with db.connection_context():
        content = writer.create_content(account, {"title": title, "meta_title": meta_title, "images": images})
        return content, [i.id for i in writer.content_images(account, content.id)]


def settings(account: int, **values):
    """Save image-generation settings for `account`; raises if they do not validate."""
    with db.connection_context():
        view, errors = image_settings.save(account, values)
    assert not errors, errors
    return view


def image(image_id: int) -> Images:
    with db.connection_context():
        return Images.get_by_id(image_id)


def images(ids) -> list[Images]:
    with db.connection_context():
        rows = {i.id: i for i in Images.select().where(Images.id.in_(list(ids)))}
    return [rows[i] for i in ids]


def content(content_id: int) -> Content:
    with db.connection_context():
        return Content.get_by_id(content_id)

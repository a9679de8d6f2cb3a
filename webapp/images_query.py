"""The Images page's reads: a page of articles with their images in a fixed number of queries
(count, articles, images), whatever the page size, so a thousand articles stay fast."""

import datetime as dt
import math
from dataclasses import dataclass, field
from decimal import Decimal
from functools import reduce

from jobs import image_settings
from jobs.errors import ValidationError
from models import AITaskLog, Content, Images, utcnow

PER_PAGE = 20
# A task still "running" after this long lost its worker; a reload should not reattach to it forever.
REATTACH_WINDOW = dt.timedelta(hours=6)
TYPE_LABELS = {"featured": "Featured image", "desktop": "Desktop image", "mobile": "Mobile image"}


def image_label(image_type: str, position: int) -> str:
    if image_type == "in_article":
        return f"In-article image {position}"
    return TYPE_LABELS.get(image_type, image_type)


@dataclass
class ArticleBlock:
    """One article on the Images page: its images that the settings turn on, in display order."""

    content: Content
    images: list = field(default_factory=list)
    hidden: int = 0  # images the settings turn off (desktop/mobile off, in-article beyond the count)

    @property
    def pending_ids(self) -> list[int]:
        """What Generate Images sends: pending images that have a prompt."""
        return [i.id for i in self.images if i.status == "pending" and (i.prompt or "").strip()]

    def estimate(self, prices: dict | None) -> Decimal | None:
        """What a dry run answers for pending_ids: each image's estimate summed, an unpriced one as 0."""
        if prices is None:
            return None
        pending = set(self.pending_ids)
        return sum((prices.get(i.image_type) or Decimal(0) for i in self.images if i.id in pending), Decimal(0))

    @property
    def failed_ids(self) -> list[int]:
        return [i.id for i in self.images if i.status == "failed"]

    @property
    def busy(self) -> bool:
        return any(i.status in ("queued", "generating") for i in self.images)

    @property
    def counts(self) -> dict:
        counts: dict = {}
        for image in self.images:
            counts[image.status] = counts.get(image.status, 0) + 1
        return counts


def settings_view(account_id: int) -> dict:
    return image_settings.public_view(image_settings.settings_row(account_id))


def prices(account_id: int) -> dict | None:
    """Placement → one image's estimate at the account's settings (None: unpriced), read once per render.
    None when the settings cannot generate: the buttons show no figure, and Generate says what is wrong."""
    try:
        settings = image_settings.load(account_id, with_key=False)
    except ValidationError:
        return None
    return {placement: settings.estimate(placement) for placement in image_settings.PLACEMENTS}


def shown_condition(view: dict):
    """SQL for "the settings turn this image on" — the one definition the page and its filter share."""
    parts = [Images.image_type == "featured",
             (Images.image_type == "in_article") & (Images.position <= int(view["max_in_article_images"]))]
    if view["desktop_enabled"]:
        parts.append(Images.image_type == "desktop")
    if view["mobile_enabled"]:
        parts.append(Images.image_type == "mobile")
    return reduce(lambda a, b: a | b, parts)


def article_page(account_id: int, view: dict, page: int, status: str | None, per_page: int = PER_PAGE):
    """(blocks, total articles, number of pages) for one page, newest articles first."""
    query = Content.for_account(account_id)
    if status:
        having = (Images.select(Images.content)
                  .where((Images.account == account_id) & (Images.status == status) & shown_condition(view)))
        query = query.where(Content.id.in_(having))
    total = query.count()
    pages = max(1, math.ceil(total / per_page))
    contents = list(query.order_by(Content.id.desc()).paginate(min(max(page, 1), pages), per_page))
    return _with_images(account_id, view, contents), total, pages


def blocks_for(account_id: int, view: dict, content_ids) -> list[ArticleBlock]:
    """The given articles of this account (others' and missing ones are left out), newest first."""
    ids = sorted({int(c) for c in content_ids}, reverse=True)
    if not ids:
        return []
    contents = list(Content.for_account(account_id).where(Content.id.in_(ids)).order_by(Content.id.desc()))
    return _with_images(account_id, view, contents)


def _with_images(account_id: int, view: dict, contents: list) -> list[ArticleBlock]:
    blocks = {c.id: ArticleBlock(c) for c in contents}
    if not blocks:
        return []
    rows = (Images.select(Images, shown_condition(view).alias("shown"))
            .where((Images.account == account_id) & Images.content.in_(list(blocks)))
            .order_by(Images.content, Images.type_rank(), Images.position, Images.id))
    for image in rows:
        block = blocks[image.content_id]
        if image.shown:
            block.images.append(image)
        else:
            block.hidden += 1
    return list(blocks.values())


def latest_unfinished_task(account_id: int) -> str | None:
    """The account's newest task that has not ended, so a reload reattaches its progress panel."""
    row = (AITaskLog.select(AITaskLog.task_id)
           .where((AITaskLog.account == account_id) & AITaskLog.state.in_(["queued", "running"])
                  & (AITaskLog.created_at > utcnow() - REATTACH_WINDOW))
           .order_by(AITaskLog.created_at.desc()).first())
    return row.task_id if row else None


def image_rows(account_id: int, ids) -> dict:
    """id → {label, content_id, title} for the progress panel's rows, in one query."""
    rows = (Images.select(Images.id, Images.image_type, Images.position, Images.content, Content.id, Content.title,
                          Content.meta_title)
            .join(Content).where((Images.account == account_id) & Images.id.in_(list(ids))))
    return {r.id: {"label": image_label(r.image_type, r.position), "content_id": r.content_id,
                   "title": r.content.display_title} for r in rows}

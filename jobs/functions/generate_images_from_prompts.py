"""`generate_images_from_prompts`: turn stored image prompts into stored images, one AI call each."""

import logging

from peewee import Case, fn

from config import load_config
from jobs import image_settings
from jobs.base import AICall, BaseAIFunction
from jobs.errors import AIFunctionError, NotFound, ValidationError
from jobs.persist import retry_on_disconnect
from jobs.prompts import PromptRegistry, render_template
from jobs.stopwatch import Stopwatch
from jobs.storage import ENCODE_QUALITY, fetch_image, get_storage, image_key, prepare_image
from models import AITaskLog, Content, Images, utcnow

log = logging.getLogger(__name__)

MAX_IDS = 200
TYPE_ORDER = {"featured": 0, "in_article": 1, "desktop": 2, "mobile": 3}


def _plural(n: int, word: str = "image") -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def media_url(image_id: int, extension: str, digest: str) -> str:
    # The digest in the query changes with the content, so browsers never show a stale image.
    return f"/media/images/{image_id}.{extension}?v={digest[:12]}"


class GenerateImagesFromPromptsFunction(BaseAIFunction):
    requires_multiple_ai_calls = True
    background_save = True

    def get_name(self) -> str:
        return "generate_images_from_prompts"

    def get_metadata(self) -> dict:
        return {
            "display_name": "Generate Images from Prompts",
            "description": "Generate actual images from image prompts",
            "phases": {
                "INIT": "Validating image prompts...",
                "PREP": "Preparing image generation queue...",
                "AI_CALL": "Generating images with AI...",
                "PARSE": "Processing image URLs...",
                "SAVE": "Saving image URLs...",
                "DONE": "Images generated!",
            },
            "steps": [
                ("INIT", "Validating image prompts"),
                ("PREP", "Preparing image generation queue"),
                ("AI_CALL", "Generating images with AI"),
                ("PARSE", "Processing image URLs"),
                ("SAVE", "Saving image URLs"),
            ],
        }

    def progress_message(self, phase, *, index=0, total=0, done=0, failed=0) -> str:
        if phase == "PREP":
            return f"Preparing to generate {_plural(total)}"
        if phase == "AI_CALL":
            return f"Generating image {index} of {total} with AI"
        if phase == "PARSE":
            return f"{_plural(done)} generated"
        if phase == "SAVE":
            return f"Saving {_plural(done)}"
        if phase == "DONE":
            if failed:
                return f"{_plural(done)} generated, {failed} failed"
            return f"{_plural(done)} generated successfully"
        return super().progress_message(phase)

    # --- before anything is queued -------------------------------------------------------------

    def validate(self, payload: dict, account_id: int) -> dict:
        ids = _clean_ids(payload.get("ids") if isinstance(payload, dict) else None)
        regenerate = payload.get("regenerate", False)
        if not isinstance(regenerate, bool):
            raise ValidationError("'regenerate' must be true or false.")
        # No settings, a bad provider or a retired model → a 400 that says which, nothing queued.
        settings = image_settings.load(account_id)
        images = {i.id: i for i in Images.for_account(account_id).where(Images.id.in_(ids))}
        missing = [i for i in ids if i not in images]
        if missing:
            # Another account's image is reported exactly like one that does not exist.
            raise NotFound(f"No image with id {', '.join(map(str, missing))}.")
        allowed = ("pending", "failed", "generated") if regenerate else ("pending", "failed")
        run, skipped = [], []
        for image_id in ids:
            reason = _skip_reason(images[image_id], allowed, settings)
            if reason:
                skipped.append({"id": image_id, "reason": reason})
            else:
                run.append(image_id)
        if not run:
            reasons = "; ".join(f"image {s['id']}: {s['reason']}" for s in skipped)
            raise ValidationError(f"Nothing to generate ({reasons}).")
        return {"ids": run, "skipped": skipped, "regenerate": regenerate, "limits": settings.limits}

    def claim(self, validated: dict, task_id: str, account_id: int) -> list:
        allowed = ["pending", "failed"] + (["generated"] if validated["regenerate"] else [])
        # One conditional update: a second request for the same images finds them queued and takes none.
        # A new task starts the image's charges afresh: its cost is what this task spends on it.
        (Images.update(status="queued", task_id=task_id, error=None, attempts=0, cost=None, provider_request_id=None,
                       charge_uncertain=False, updated_at=utcnow())
         .where((Images.account == account_id) & Images.id.in_(validated["ids"]) & Images.status.in_(allowed))
         .execute())
        taken = Images.select(Images.id).where((Images.task_id == task_id) & (Images.status == "queued"))
        ids = [row.id for row in _in_run_order(taken)]
        if not ids:
            raise ValidationError("Those images are already being generated by another request.")
        return ids

    # --- in the worker -------------------------------------------------------------------------

    def prepare(self, payload: dict, account_id: int) -> dict:
        # The request checked the shutdown dates announced to the account; the catalog's are checked here.
        settings = image_settings.load(account_id, announced=False)
        # With their articles: build_prompt needs each one's title.
        query = (Images.for_account(account_id).select(Images, Content).join(Content)
                 .where(Images.id.in_(payload["ids"])))
        return {
            "items": list(_in_run_order(query)),
            "settings": settings,
            "credentials": settings.credentials,
            "limits": settings.limits,
            "image_prompt_template": PromptRegistry.get_image_prompt_template(account_id, payload),
            "negative_prompt": PromptRegistry.get_negative_prompt(account_id, payload),
        }

    def build_prompt(self, data: dict, account_id: int) -> AICall:
        image, settings = data["item"], data["settings"]
        content = image.content
        prompt = render_template(
            data["image_prompt_template"],
            post_title=content.title or content.meta_title,
            image_prompt=image.prompt,
            image_type=settings.image_type,
        )
        width, height = settings.sizes[image.image_type]
        return AICall("generate_image", {
            "prompt": prompt,
            "provider": settings.provider,
            "model": settings.model,
            "size": f"{width}x{height}",
            "negative_prompt": data["negative_prompt"] or None,
            "function_name": self.get_name(),
            # Asked for in the account's own format and encoder quality, so the answer is stored as sent.
            "output_format": settings.image_format,
            "output_compression": ENCODE_QUALITY.get(settings.image_format),
            "quality": settings.quality,
            "background": settings.background,
            "end_user": settings.end_user,
            "price_per_image": str(settings.price_per_image) if settings.price_per_image is not None else None,
        })

    def record_answer(self, item_id, task_id: str, account_id: int, response: dict) -> None:
        """The provider answered, so it has billed: its cost and request id are on the row before
        anything else can fail. A re-run of the image adds its own charge."""
        cost = response.get("cost")
        retry_on_disconnect(lambda: (
            Images.update(cost=fn.COALESCE(Images.cost, 0) + cost if cost is not None else Images.cost,
                          provider_request_id=response.get("request_id"), charge_uncertain=False,
                          updated_at=utcnow())
            .where((Images.id == item_id) & (Images.account == account_id) & (Images.task_id == task_id))
            .execute()
        ))

    def parse_response(self, response: dict, step_tracker=None) -> dict:
        if not response.get("bytes") and not response.get("url"):
            raise AIFunctionError("The provider answered without an image.")
        return {key: response.get(key) for key in ("url", "bytes", "cost", "request_id", "download_hosts")}

    def save_output(self, parsed: dict, original_data: dict, account_id: int, step_tracker=None) -> dict:
        image, settings = original_data["item"], original_data["settings"]
        clock = Stopwatch()
        raw = parsed["bytes"] or fetch_image(parsed["url"], tuple(parsed["download_hosts"] or ()))
        clock.lap("download")
        stored = prepare_image(raw, settings.image_format)
        clock.lap("verify_convert")
        digest = stored.digest
        key = image_key(account_id, image.id, digest, stored.extension)
        storage = get_storage(load_config())
        # Bytes first: 'generated' means stored. Retried, because the provider has already charged.
        retry_on_disconnect(lambda: storage.save(key, stored.data, stored.content_type))
        clock.lap("store")
        # The cost is already on the row (record_answer), where a failed save keeps it too.
        updated = retry_on_disconnect(lambda: (
            Images.update(
                status="generated", image_url=media_url(image.id, stored.extension, digest),
                provider_url=parsed["url"], revised_prompt=None,
                width=stored.width, height=stored.height, image_format=stored.image_format,
                file_path=key, file_size=len(stored.data), provider=settings.provider, model=settings.model,
                error=None, updated_at=utcnow(),
            )
            .where((Images.id == image.id) & (Images.task_id == original_data["task_id"])
                   & Images.status.in_(["generating", "failed"]))
            .execute()
        ))
        clock.lap("database")
        if not updated:
            log.warning("image %s was taken by another task while saving; keeping its state", image.id)
            return {"count": 0, "images_generated": 0, "cost": None, "timings": clock.timings}
        if image.file_path and image.file_path != key:
            storage.delete(image.file_path)  # a regenerated image replaces the old file only now
        cost = Images.select(Images.cost).where(Images.id == image.id).scalar()
        return {"count": 1, "images_generated": 1, "cost": cost,
                "image_url": media_url(image.id, stored.extension, digest), "timings": clock.timings}

    # --- item lifecycle ------------------------------------------------------------------------

    def begin_item(self, item_id, task_id: str, account_id: int) -> bool:
        now = utcnow()
        taken = (Images.update(status="generating", attempts=Images.attempts + 1, generation_started_at=now,
                               error=None, updated_at=now)
                 .where((Images.id == item_id) & (Images.account == account_id) & (Images.task_id == task_id)
                        & Images.status.in_(["queued", "failed", "generating"]))
                 .execute())
        return taken == 1

    def fail_item(self, item_id, task_id: str, account_id: int, reason: str, *, request_id: str | None = None,
                  charge_uncertain: bool = False) -> None:
        details = {"provider_request_id": request_id} if request_id else {}
        if charge_uncertain:
            details["charge_uncertain"] = True
        retry_on_disconnect(lambda: (
            Images.update(status="failed", error=reason[:2000], updated_at=utcnow(), **details)
            .where((Images.id == item_id) & (Images.account == account_id) & (Images.task_id == task_id)
                   & Images.status.in_(["queued", "generating"]))
            .execute()
        ))

    def item_states(self, item_ids: list, account_id: int) -> list[dict]:
        rows = {i.id: i for i in Images.for_account(account_id).where(Images.id.in_(item_ids))}
        return [_state(rows[i]) for i in item_ids if i in rows]

    def item_ids_for(self, task_id: str, account_id: int) -> list:
        row = AITaskLog.get_or_none((AITaskLog.task_id == task_id) & (AITaskLog.account == account_id))
        return list(row.item_ids) if row else []


def _state(image) -> dict:
    return {"id": image.id, "status": image.status, "image_url": image.image_url, "error": image.error,
            "cost": image.cost, "started_at": image.generation_started_at, "task_id": image.task_id}


def _clean_ids(ids) -> list[int]:
    if ids is None or ids == []:
        raise ValidationError("No IDs provided")
    if not isinstance(ids, list):
        raise ValidationError("'ids' must be a list of image ids.")
    if len(ids) > MAX_IDS:
        raise ValidationError(f"At most {MAX_IDS} ids per request; got {len(ids)}.")
    bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int) or i <= 0 or i > 2**53]
    if bad:
        raise ValidationError(f"'ids' must hold positive whole numbers; got {bad[0]!r}.")
    if len(set(ids)) != len(ids):
        raise ValidationError("'ids' lists the same image more than once.")
    return ids


def _skip_reason(image, allowed, settings) -> str | None:
    if not (image.prompt or "").strip():
        return "it has no prompt"
    if image.status in ("queued", "generating"):
        return "it is already being generated"
    if image.status not in allowed:
        return f"it is already {image.status} (use regenerate to make it again)"
    if image.image_type == "in_article" and image.position > settings.max_in_article_images:
        return f"in-article image {image.position} is beyond the {settings.max_in_article_images} configured"
    if image.image_type == "desktop" and not settings.desktop_enabled:
        return "desktop images are turned off in the settings"
    if image.image_type == "mobile" and not settings.mobile_enabled:
        return "mobile images are turned off in the settings"
    return None


def _in_run_order(query):
    type_rank = Case(Images.image_type, [(t, n) for t, n in TYPE_ORDER.items()], 9)
    return query.order_by(type_rank, Images.content, Images.position, Images.id)


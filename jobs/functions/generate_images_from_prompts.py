"""`generate_images_from_prompts`: turn stored image prompts into stored images, one AI call each."""

import logging
from dataclasses import dataclass
from decimal import Decimal

from config import load_config
from jobs import budget, image_settings, publishing
from jobs.base import AICall, BaseAIFunction, Prepared
from jobs.errors import AIFunctionError, NotFound, ValidationError
from jobs.image_settings import ImageSettings
from jobs.persist import retry_on_disconnect
from jobs.prompts import PromptRegistry, render_template
from jobs.providers import get_provider
from jobs.storage import ENCODE_QUALITY, answer_key, fetch_image, get_storage, image_key, prepare_image
from models import AITaskLog, Content, Images

log = logging.getLogger(__name__)

MAX_IDS = 200


@dataclass(frozen=True)
class ImagesPrepared(Prepared):
    """The account's image settings and prompt templates, loaded once per job."""

    settings: ImageSettings | None = None
    image_prompt_template: str = ""
    negative_prompt: str = ""


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
        if phase == "CANCELING":
            return (f"Canceling: {_plural(index)} in flight will finish and be stored (the provider bills a "
                    f"call once it has started), {total} not started")
        if phase == "CANCELED":
            return f"Canceled: {_plural(done)} generated, " + (f"{failed} failed, " if failed else "") + \
                f"{total} not started"
        return super().progress_message(phase)

    # --- before anything is queued -------------------------------------------------------------

    def validate(self, payload: dict, account_id: int) -> dict:
        ids = _clean_ids(payload.get("ids") if isinstance(payload, dict) else None)
        regenerate, dry_run = payload.get("regenerate", False), payload.get("dry_run", False)
        if not isinstance(regenerate, bool):
            raise ValidationError("'regenerate' must be true or false.")
        if not isinstance(dry_run, bool):
            raise ValidationError("'dry_run' must be true or false.")
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
        # What the provider's published prices say these calls will cost; a model without a price
        # (an AIR id typed in) counts as 0 and is named in `unpriced`.
        estimates = [settings.estimate(images[i].image_type) for i in run]
        estimate = sum((e for e in estimates if e is not None), Decimal(0))
        spend = budget.budget_of(account_id, settings)
        if not dry_run:
            budget.check_request(spend, estimate, len(run))
        return {"ids": run, "skipped": skipped, "regenerate": regenerate, "limits": settings.limits,
                "estimate": {"images": len(run), "estimated_cost": float(estimate),
                             "unpriced": sum(e is None for e in estimates), "budget": spend.as_dict()}}

    def claim(self, validated: dict, task_id: str, account_id: int) -> list:
        ids = Images.claim(account_id, validated["ids"], task_id, regenerate=validated["regenerate"])
        if not ids:
            raise ValidationError("Those images are already being generated by another request.")
        return ids

    # --- in the worker -------------------------------------------------------------------------

    def prepare(self, payload: dict, account_id: int) -> ImagesPrepared:
        # The request checked the shutdown dates announced to the account; the catalog's are checked here.
        settings = image_settings.load(account_id, announced=False)
        # With their articles: build_prompt needs each one's title.
        query = (Images.for_account(account_id).select(Images, Content).join(Content)
                 .where(Images.id.in_(payload["ids"])))
        return ImagesPrepared(
            items=list(Images.in_run_order(query)),
            credentials=settings.credentials,
            limits=settings.limits,
            task_id=payload.get("task_id", ""),
            monthly_budget=settings.monthly_budget,
            settings=settings,
            image_prompt_template=PromptRegistry.get_image_prompt_template(account_id, payload),
            negative_prompt=PromptRegistry.get_negative_prompt(account_id, payload),
        )

    def build_prompt(self, data: ImagesPrepared, account_id: int) -> AICall:
        image, settings = data.item, data.settings
        content = image.content
        prompt = render_template(
            data.image_prompt_template,
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
            "negative_prompt": data.negative_prompt or None,
            "function_name": self.get_name(),
            # Asked for in the account's own format and encoder quality, so the answer is stored as sent.
            "output_format": settings.image_format,
            "output_compression": ENCODE_QUALITY.get(settings.image_format),
            "quality": settings.quality,
            "background": settings.background,
            "end_user": settings.end_user,
            "price_per_image": str(settings.price_per_image) if settings.price_per_image is not None else None,
        }, estimate=settings.estimate(image.image_type))

    def record_answer(self, data: ImagesPrepared, response: dict) -> None:
        """The provider answered, so it has billed: its cost and request id are on the row before
        anything else can fail, then the answer itself — the bytes in storage's staging area (OpenAI
        answers only base64), or the provider's URL, valid for an hour — so the SAVE job, or a recovery
        after a killed worker or a lost Redis, stores it without a second call."""
        image, task_id = data.item, data.task_id
        retry_on_disconnect(lambda: Images.answered(
            image.account_id, image.id, task_id, cost=response.get("cost"), request_id=response.get("request_id"),
            provider_url=response.get("url")))
        if response.get("bytes"):
            key = answer_key(image.account_id, image.id, task_id)
            retry_on_disconnect(lambda: get_storage(load_config()).save(key, response["bytes"],
                                                                        "application/octet-stream"))
            retry_on_disconnect(lambda: Images.answer_staged(image.account_id, image.id, task_id, key))

    def answer_of(self, data: ImagesPrepared) -> dict | None:
        image, settings = data.item, data.settings
        if image.answer_key:
            return {"bytes": get_storage(load_config()).load(image.answer_key).data, "url": None,
                    "download_hosts": ()}
        if image.provider_url:
            hosts = get_provider(settings.provider).download_hosts(image.provider_url,
                                                                   settings.credentials.base_url or "")
            return {"bytes": None, "url": image.provider_url, "download_hosts": hosts}
        return None

    def parse_response(self, response: dict) -> dict:
        if not response.get("bytes") and not response.get("url"):
            raise AIFunctionError("The provider answered without an image.")
        return {key: response.get(key) for key in ("url", "bytes", "download_hosts")}

    def save_output(self, parsed: dict, original_data: ImagesPrepared, account_id: int) -> dict:
        image, settings = original_data.item, original_data.settings
        raw = parsed["bytes"] or fetch_image(parsed["url"], tuple(parsed["download_hosts"] or ()))
        stored = prepare_image(raw, settings.image_format)
        digest = stored.digest
        key = image_key(account_id, image.id, digest, stored.extension)
        config = load_config()
        storage = get_storage(config)
        # Bytes first: 'generated' means stored. Retried, because the provider has already charged.
        retry_on_disconnect(lambda: storage.save(key, stored.data, stored.content_type))
        # The cost is already on the row (record_answer), where a failed save keeps it too. The row, its
        # file name and its public URL are written together (publishing.store).
        updated = retry_on_disconnect(lambda: publishing.store(
            account_id, image, original_data.task_id,
            key=publishing.public_key(config.secret_key, account_id, image.id, digest),
            content_type=stored.content_type, extension=stored.extension, grace=config.public_url_grace,
            image_url=media_url(image.id, stored.extension, digest), revised_prompt=None, width=stored.width,
            height=stored.height, image_format=stored.image_format, file_path=key, file_size=len(stored.data),
            provider=settings.provider, model=settings.model, generated_prompt=image.prompt))
        if not updated:
            log.warning("image %s was taken by another task while saving; keeping its state", image.id)
            return {"count": 0, "images_generated": 0, "cost": None}
        # A regenerated image's old file stays while its old public URL answers (remove_expired deletes
        # both); only a file that no URL points at (an image made before public URLs) goes now.
        if image.file_path and image.file_path != key \
                and not publishing.file_in_use(account_id, image.id, image.file_path):
            storage.delete(image.file_path)
        if image.answer_key:
            storage.delete(image.answer_key)  # stored: the staged answer is not needed any more
        cost = Images.select(Images.cost).where(Images.id == image.id).scalar()
        return {"count": 1, "images_generated": 1, "cost": cost,
                "image_url": media_url(image.id, stored.extension, digest)}

    # --- item lifecycle ------------------------------------------------------------------------

    def begin_item(self, item_id, task_id: str, account_id: int) -> bool:
        return Images.begin(account_id, item_id, task_id)

    def fail_item(self, item_id, task_id: str, account_id: int, reason: str, *, request_id: str | None = None,
                  charge_uncertain: bool = False) -> None:
        retry_on_disconnect(lambda: Images.fail(account_id, item_id, task_id, reason, request_id=request_id,
                                                charge_uncertain=charge_uncertain))

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


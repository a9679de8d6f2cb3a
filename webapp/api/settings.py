"""Image-generation settings (the key is write-only) and prompt templates."""

from flask import g

from jobs import image_settings
from jobs.prompts import PromptRegistry
from models import PROMPT_TYPES
from webapp.api import bp, json_body
from webapp.errors import json_error

MANAGERS_ONLY = "Only the account's managers can change these settings."


@bp.get("/system/settings/integrations/image_generation/")
def get_image_settings():
    """The account's image-generation settings, without the key."""
    return image_settings.public_view(image_settings.settings_row(g.account_id))


@bp.put("/system/settings/integrations/image_generation/")
def put_image_settings():
    """Save the settings (managers only); a blank or missing api_key keeps the stored one."""
    if not g.user.is_manager:
        return json_error(MANAGERS_ONLY, "PermissionDenied", 403)
    view, errors = image_settings.save(g.account_id, json_body())
    if errors:
        field, message = next(iter(errors.items()))
        return {"error": f"{field}: {message}", "type": "ValidationError", "fields": errors}, 400
    return view


@bp.get("/thinker/prompts/")
def get_prompts():
    """The image prompt template and negative prompt in effect."""
    return prompts_view(g.account_id)


@bp.put("/thinker/prompts/")
def put_prompts():
    """Save templates; a template with a placeholder other than the three allowed is a 400."""
    PromptRegistry.save(g.account_id, json_body())
    return prompts_view(g.account_id)


def prompts_view(account_id) -> dict:
    return {name: PromptRegistry.get(name, account_id) for name in PROMPT_TYPES}

"""Prompts: the account's image prompt template and negative prompt, with a live preview."""

from flask import Blueprint, flash, g, redirect, render_template, request, url_for

from jobs import image_settings
from jobs.errors import ValidationError
from jobs.prompts import DEFAULTS, MAX_PROMPT_CHARS, PromptRegistry, check_template
from jobs.prompts import render_template as render_prompt
from jobs.providers import PROVIDERS
from models import PROMPT_TYPES, Content, Images
from webapp.htmx import install_error_handlers, is_htmx, message, toast

bp = Blueprint("prompts_page", __name__, url_prefix="/thinker")
install_error_handlers(bp)

# Shown when the account has no article with a prompt yet.
SAMPLE = {"post_title": "A weekend in Lisbon",
          "image_prompt": "A yellow tram climbing a steep cobbled street at golden hour"}
LABELS = {"image_prompt_template": "image prompt template", "negative_prompt": "negative prompt"}


@bp.route("/prompts", methods=["GET", "POST"])
def prompts():
    """Edit the prompt templates; a template with a placeholder other than the three allowed is refused."""
    current = {name: PromptRegistry.get(name, g.account_id) for name in PROMPT_TYPES}
    if request.method == "GET":
        return render_template("prompts/prompts.html", **_context(current, {}))
    action = request.form.get("action", "save")
    errors: dict = {}
    if action.startswith("reset:"):
        name = action.removeprefix("reset:")
        if name not in PROMPT_TYPES:
            return message(f"Nothing called {name!r} to reset.", 400)
        PromptRegistry.save(g.account_id, {name: ""})  # blank means the built-in default
        # The other field keeps what was typed; only the reset one changes.
        form = {**{n: request.form.get(n, current[n]) for n in PROMPT_TYPES}, name: DEFAULTS[name]}
        notice = f"The {LABELS[name]} is back to the default."
    else:
        form = {name: request.form.get(name, "") for name in PROMPT_TYPES}
        try:
            check_template(form["image_prompt_template"])
        except ValidationError as exc:
            errors["image_prompt_template"] = exc.message
        if not errors:
            try:
                # Text equal to the default is stored blank, so it follows future default changes.
                PromptRegistry.save(g.account_id, {n: "" if v.strip() == DEFAULTS[n] else v for n, v in form.items()})
            except ValidationError as exc:
                errors["form"] = exc.message
        notice = "Prompts saved."
    status = 422 if errors else 200
    if not is_htmx():
        if not errors:
            flash(notice, "success")
            return redirect(url_for(".prompts"))
        return render_template("prompts/prompts.html", **_context(form, errors)), status
    html = render_template("prompts/_form.html", **_context(form, errors))
    return (html if errors else html + toast(notice, "success")), status


@bp.post("/prompts/preview")
def preview():
    """The template rendered for a sample article, as the provider would receive it."""
    template = request.form.get("image_prompt_template", "")
    return render_template("prompts/_preview.html", **_preview(template, _sample(g.account_id)))


def _context(form: dict, errors: dict) -> dict:
    sample = _sample(g.account_id)
    uses = [p.label for p in PROVIDERS.values() if any(m.supports_negative_prompt for m in p.models.values())]
    ignores = [p.label for p in PROVIDERS.values() if p.label not in uses]
    return {"form": form, "errors": errors, "defaults": DEFAULTS, "max_chars": MAX_PROMPT_CHARS,
            "negative_users": uses, "negative_ignorers": ignores, **_preview(form["image_prompt_template"], sample)}


def _preview(template: str, sample: dict) -> dict:
    try:
        return {"sample": sample, "preview": render_prompt(template, **sample), "preview_error": None}
    except ValidationError as exc:
        return {"sample": sample, "preview": None, "preview_error": exc.message}


def _sample(account_id: int) -> dict:
    """The newest image prompt of the account with its article's title, or a built-in example."""
    row = (Images.select(Images.prompt, Content.title, Content.meta_title).join(Content)
           .where((Images.account == account_id) & (Images.prompt != "")).order_by(Images.id.desc()).first())
    view = image_settings.public_view(image_settings.settings_row(account_id))
    if row is None:
        return {**SAMPLE, "image_type": view["image_type"]}
    return {"post_title": row.content.title or row.content.meta_title, "image_prompt": row.prompt,
            "image_type": view["image_type"]}

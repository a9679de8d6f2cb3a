"""Settings → Image generation: provider, model, the write-only API key and the output options."""

from flask import Blueprint, flash, g, redirect, render_template, request, url_for

from jobs import image_settings
from jobs.providers import PROVIDERS
from webapp.htmx import install_error_handlers, is_htmx, message, toast

bp = Blueprint("settings_page", __name__, url_prefix="/settings/integrations")
install_error_handlers(bp)

TEXT_FIELDS = ("provider", "model", "base_url", "image_type", "max_in_article_images", "image_format",
               "max_concurrent_calls", "calls_per_minute")
# Unticked checkboxes are not sent at all, so a missing flag means "off".
FLAGS = ("desktop_enabled", "mobile_enabled", "is_active")


@bp.route("/image-generation", methods=["GET", "POST"])
def image_generation():
    """The account's image-generation settings; saving validates every field and keeps the key hidden."""
    row = image_settings.settings_row(g.account_id)
    saved = image_settings.public_view(row)
    if request.method == "GET":
        # A first save should switch generation on; public_view reports "inactive" while there is no row.
        form = saved if row is not None else {**saved, "is_active": True}
        return render_template("settings/image_generation.html", **_form_context(form, saved, {}))
    # A field missing from the post keeps its value; a blank limit field means "auto" / "no limit".
    submitted = {name: request.form[name].strip() for name in TEXT_FIELDS if name in request.form}
    submitted.update({name: name in request.form for name in FLAGS})
    view, errors = image_settings.save(g.account_id, {**submitted, "api_key": request.form.get("api_key", "")})
    if errors:
        # Show what was typed, next to what was wrong with it; the key itself is never echoed.
        context = _form_context({**view, **submitted}, view, errors)
        if is_htmx():
            return render_template("settings/_form.html", **context), 422
        return render_template("settings/image_generation.html", **context), 422
    if not is_htmx():
        flash("Settings saved.", "success")
        return redirect(url_for(".image_generation"))
    return render_template("settings/_form.html", **_form_context(view, view, {})) + toast("Settings saved.", "success")


@bp.get("/image-generation/models")
def models():
    """The model field for one provider, so the select only ever offers that provider's models."""
    provider = request.args.get("provider", "")
    if provider not in PROVIDERS:
        return message(f"Unknown provider {provider!r}; choose one of: {', '.join(PROVIDERS)}.", 400)
    saved = image_settings.public_view(image_settings.settings_row(g.account_id))
    model = saved["model"] if saved["provider"] == provider else next(iter(PROVIDERS[provider].models))
    return render_template("settings/_model_field.html", **_form_context({**saved, "provider": provider,
                                                                        "model": model}, saved, {}))


def _form_context(form: dict, saved: dict, errors: dict) -> dict:
    provider = PROVIDERS.get(form.get("provider"))
    return {
        "form": form,
        "saved": saved,
        "errors": errors,
        "providers": PROVIDERS,
        "provider": provider,
        "models": provider.models if provider else {},
        "image_types": image_settings.IMAGE_TYPES,
        "formats": image_settings.FORMATS,
    }

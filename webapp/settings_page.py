"""Settings → Image generation: provider, model, the write-only API key, the output options, the budgets
and the webhook (its secret write-only, shown once when the server makes it)."""

from decimal import Decimal

from flask import Blueprint, current_app, flash, g, make_response, redirect, render_template, request, url_for

from jobs import budget, image_settings
from jobs.errors import ValidationError
from jobs.providers import PROVIDERS
from jobs.providers.catalog import parse_size
from webapp.htmx import install_error_handlers, is_htmx, message, toast

bp = Blueprint("settings_page", __name__, url_prefix="/settings/integrations")
install_error_handlers(bp)
bp.add_app_template_filter(budget.usd, "usd")  # the Images page registers the same one: either may load first

TEXT_FIELDS = ("provider", "model", "base_url", "image_type", "max_in_article_images", "image_format",
               "max_concurrent_calls", "calls_per_minute", "quality", "background", "price_per_image",
               "monthly_budget", "run_budget", "webhook_url")
PLACEMENT_LABELS = {"featured": "Featured", "in_article": "In-article", "desktop": "Desktop", "mobile": "Mobile"}
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
        return render_template("settings/image_generation.html", **_page_context(form, saved, {}))
    if not g.user.is_manager:
        # The key goes wherever the provider and base URL say: only managers choose them.
        return message("Only the account's managers can change these settings.", 403)
    # A field missing from the post keeps its value; a blank limit field means "auto" / "no limit".
    submitted = {name: request.form[name].strip() for name in TEXT_FIELDS if name in request.form}
    submitted.update({name: name in request.form for name in FLAGS})
    sizes = _submitted_sizes(request.form)
    if sizes is not None:
        submitted["sizes"] = sizes
    view, errors = image_settings.save(g.account_id, {
        **submitted, "api_key": request.form.get("api_key", ""),
        "webhook_secret": request.form.get("webhook_secret", ""),
        "new_webhook_secret": "new_webhook_secret" in request.form})
    made = view.pop("webhook_secret", None)  # a secret the server just made: shown in this answer only
    if errors:
        # Show what was typed, next to what was wrong with it; the key itself is never echoed.
        context = _page_context({**view, **submitted}, view, errors)
        if is_htmx():
            return render_template("settings/_form.html", **context), 422
        return render_template("settings/image_generation.html", **context), 422
    if made:
        return _secret_shown_once(view, made)
    if not is_htmx():
        flash("Settings saved.", "success")
        return redirect(url_for(".image_generation"))
    return render_template("settings/_form.html", **_page_context(view, view, {})) + toast("Settings saved.", "success")


def _secret_shown_once(view: dict, secret: str):
    """The saved form with the new webhook secret in a notice. A plain post gets the page itself rather
    than a redirect: a flashed secret would travel in the session cookie."""
    context = {**_page_context(view, view, {}), "new_webhook_secret": secret}
    if is_htmx():
        body = render_template("settings/_form.html", **context) + toast("Settings saved.", "success")
    else:
        flash("Settings saved.", "success")  # shown by this very page, so it leaves the session at once
        body = render_template("settings/image_generation.html", **context)
    response = make_response(body)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/image-generation/models")
def models():
    """The model and what depends on it, for one provider and model: only what that model takes is offered.
    Sizes typed so far are kept where the model takes them, else its defaults are shown."""
    provider_name = request.args.get("provider", "")
    provider = PROVIDERS.get(provider_name)
    if provider is None:
        return message(f"Unknown provider {provider_name!r}; choose one of: {', '.join(PROVIDERS)}.", 400)
    saved = image_settings.public_view(image_settings.settings_row(g.account_id))
    model = request.args.get("model", "")
    if image_settings.spec_or_none(provider, model) is None:
        model = saved["model"] if saved["provider"] == provider_name else next(iter(provider.offered_models()), "")
    spec = image_settings.spec_or_none(provider, model)
    typed = _submitted_sizes(request.args) or {}
    sizes = {placement: size if spec and _fits(spec, size) else None for placement, size in typed.items()}
    form = {**saved, "provider": provider_name, "model": model,
            "sizes": image_settings.effective_sizes({"sizes": {k: v for k, v in sizes.items() if v}}, spec),
            "quality": request.args.get("quality") or saved["quality"],
            "background": request.args.get("background") or saved["background"],
            "price_per_image": request.args.get("price_per_image", saved["price_per_image"])}
    return render_template("settings/_model_field.html", **_form_context(form, saved, {}))


def _submitted_sizes(values) -> dict | None:
    names = [f"size_{placement}" for placement in image_settings.PLACEMENTS]
    if not any(name in values for name in names):
        return None
    return {placement: values.get(f"size_{placement}", "").strip() for placement in image_settings.PLACEMENTS
            if f"size_{placement}" in values}


def _fits(spec, text) -> bool:
    size = parse_size(text)
    return size is not None and spec.size_rule.problem(*size) is None


def _form_context(form: dict, saved: dict, errors: dict) -> dict:
    provider = PROVIDERS.get(form.get("provider"))
    spec = image_settings.spec_or_none(provider, form.get("model")) if provider else None
    status = None
    if spec is not None:
        status = image_settings.model_status(g.account_id, provider.name, spec).as_dict()
    return {
        "read_only": not g.user.is_manager,
        "form": form,
        "saved": saved,
        "errors": errors,
        "providers": PROVIDERS,
        "provider": provider,
        "models": provider.models if provider else {},
        "spec": spec,
        "model_status": status,
        "model_label": f"{provider.label} {spec.label} ({spec.name})" if spec else "",
        "placements": image_settings.PLACEMENTS,
        "placement_labels": PLACEMENT_LABELS,
        "defaults": {p: "{}x{}".format(*spec.default_size(p)) for p in image_settings.PLACEMENTS} if spec else {},
        "image_types": image_settings.IMAGE_TYPES,
        "formats": image_settings.FORMATS,
    }


def _page_context(form: dict, saved: dict, errors: dict) -> dict:
    """The whole form's context: the model field's, plus the budgets and this month's spend."""
    return {**_form_context(form, saved, errors), "spend": _spend(saved),
            "amounts": {name: _amount(form.get(name)) for name in ("monthly_budget", "run_budget")},
            "new_webhook_secret": None, "deliveries_url": _deliveries_url()}


def _deliveries_url() -> str | None:
    """The webhook deliveries page, for those who may see it (and once its blueprint is registered)."""
    if not (g.user.is_manager or g.user.is_admin) or "webhooks_page.deliveries" not in current_app.view_functions:
        return None
    return url_for("webhooks_page.deliveries")


def _spend(saved: dict) -> budget.Budget:
    """What the account spent this month against its saved cap. Settings that cannot generate (no key yet,
    or one the encryption keys cannot open: this page is where it is fixed) still show the spend and the
    cap; what images in flight hold is left out then, as it is priced by the settings."""
    try:
        return budget.budget_of(g.account_id, image_settings.load(g.account_id, with_key=False))
    except ValidationError:
        limits = {name: Decimal(str(saved[name])) if saved[name] is not None else None
                  for name in ("monthly_budget", "run_budget")}
        return budget.Budget(monthly_limit=limits["monthly_budget"], run_limit=limits["run_budget"],
                             spent_this_month=budget.spent(g.account_id, *budget.month_of()), held=Decimal(0))


def _amount(value) -> str:
    """A saved cap as typed (25, not 25.0); what was typed back as it was."""
    if value is None or isinstance(value, str):
        return value or ""
    return format(Decimal(str(value)).normalize(), "f")

"""Prompt templates: `PromptRegistry` (task payload → account's AIPrompt → built-in default) and
the safe formatter they are rendered with.

Templates are edited by staff, so they are never passed to str.format: only the three named
placeholders are substituted, by concatenation, which also inserts values containing braces literally.
"""

from string import Formatter

from jobs.errors import ValidationError
from models import PROMPT_TYPES, AIPrompt, db, utcnow

PLACEHOLDERS = ("post_title", "image_prompt", "image_type")
MAX_PROMPT_CHARS = 4000

DEFAULTS = {
    "image_prompt_template": (
        'Create a {image_type} image for an article titled "{post_title}". '
        "The image shows: {image_prompt}. No text, no watermark."
    ),
    "negative_prompt": "text, watermark, logo, signature, blurry, low quality, distorted, deformed hands",
}


def _pieces(template: str):
    """Literal text and placeholder names; raise ValidationError naming the first bad placeholder."""
    try:
        parsed = list(Formatter().parse(template))
    except ValueError as exc:  # a lone "{" or "}"
        raise ValidationError(f"The template has an unmatched brace ({exc}); write {{{{ or }}}} for a "
                              "literal brace.") from None
    for literal, name, spec, conversion in parsed:
        if name is not None:
            shown = "{" + name + ("!" + conversion if conversion else "") + (":" + spec if spec else "") + "}"
            if name not in PLACEHOLDERS or conversion or spec:
                raise ValidationError(
                    f"The template uses the placeholder {shown}, which is not allowed; use only "
                    + ", ".join("{" + p + "}" for p in PLACEHOLDERS) + "."
                )
        yield literal, name


def check_template(template: str) -> str:
    """Validate a template before it is saved; return it unchanged."""
    for _ in _pieces(template):
        pass
    return template


def render_template(template: str, **values) -> str:
    """Render with only the allowed placeholders; checked again here in case a bad template was
    written to the database directly."""
    parts = []
    for literal, name in _pieces(template):
        parts.append(literal)
        if name is not None:
            parts.append(str(values.get(name, "")))
    return "".join(parts)


class PromptRegistry:
    @staticmethod
    def get(prompt_type: str, account_id: int, payload: dict | None = None) -> str:
        override = (payload or {}).get(prompt_type)
        if isinstance(override, str) and override.strip():
            return override
        row = AIPrompt.get_or_none((AIPrompt.account == account_id) & (AIPrompt.prompt_type == prompt_type))
        if row is not None and row.prompt_value.strip():
            return row.prompt_value
        return DEFAULTS[prompt_type]

    @classmethod
    def get_image_prompt_template(cls, account_id: int, payload: dict | None = None) -> str:
        return cls.get("image_prompt_template", account_id, payload)

    @classmethod
    def get_negative_prompt(cls, account_id: int, payload: dict | None = None) -> str:
        return cls.get("negative_prompt", account_id, payload)

    @staticmethod
    def save(account_id: int, values: dict) -> None:
        """Store the given prompts (a blank one means the built-in default); templates are checked first."""
        updates = {}
        for name in PROMPT_TYPES:
            if name not in values:
                continue
            value = values[name]
            if not isinstance(value, str) or len(value) > MAX_PROMPT_CHARS:
                raise ValidationError(f"'{name}' must be a string of at most {MAX_PROMPT_CHARS} characters.")
            if name == "image_prompt_template":
                check_template(value)
            updates[name] = value
        with db.atomic():
            for name, value in updates.items():
                row = AIPrompt.get_or_none((AIPrompt.account == account_id) & (AIPrompt.prompt_type == name))
                if row is None:
                    AIPrompt.create(account=account_id, prompt_type=name, prompt_value=value)
                else:
                    AIPrompt.update(prompt_value=value, updated_at=utcnow()).where(AIPrompt.id == row.id).execute()

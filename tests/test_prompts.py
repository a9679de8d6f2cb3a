import pytest

from jobs.errors import ValidationError
from jobs.prompts import DEFAULTS, PromptRegistry, check_template, render_template
from models import db
from tests.factories import account_id

HOSTILE = ["{post_title.__class__.__init__.__globals__}", "{image_prompt[0]}", "{0}", "{}", "{post_title!r}",
           "{post_title:>99999999}", "{foo}"]


@pytest.mark.parametrize("template", HOSTILE)
def test_it_refuses_unsafe_placeholders_and_names_them(template):
    with pytest.raises(ValidationError) as info:
        check_template("Picture: " + template)
    assert template in info.value.message


@pytest.mark.parametrize("template", HOSTILE)
def test_rendering_a_template_forced_into_the_database_fails_too(template):
    with pytest.raises(ValidationError):
        render_template(template, post_title="t", image_prompt="p", image_type="realistic")


def test_doubled_braces_are_literal_and_values_with_braces_are_inserted_literally():
    text = render_template("{{style}} {post_title} / {image_prompt} ({image_type})",
                           post_title="{image_type.__class__}", image_prompt="a {b}", image_type="cartoon")
    assert text == "{style} {image_type.__class__} / a {b} (cartoon)"


def test_a_lone_brace_is_refused_with_a_hint():
    with pytest.raises(ValidationError, match="unmatched brace"):
        check_template("oops { here")


def test_registry_prefers_payload_then_account_then_default(personas):
    with db.connection_context():
        a = account_id("A")
        assert PromptRegistry.get_image_prompt_template(a) == DEFAULTS["image_prompt_template"]
        PromptRegistry.save(a, {"image_prompt_template": "Account: {image_prompt}"})
        assert PromptRegistry.get_image_prompt_template(a) == "Account: {image_prompt}"
        assert PromptRegistry.get_image_prompt_template(a, {"image_prompt_template": "Task: {image_prompt}"}) \
            == "Task: {image_prompt}"
        # Another account is not affected.
        assert PromptRegistry.get_image_prompt_template(account_id("B")) == DEFAULTS["image_prompt_template"]
        # A blank value means the built-in default again.
        PromptRegistry.save(a, {"image_prompt_template": ""})
        assert PromptRegistry.get_image_prompt_template(a) == DEFAULTS["image_prompt_template"]


def test_saving_an_unsafe_template_stores_nothing(personas):
    with db.connection_context():
        a = account_id("A")
        with pytest.raises(ValidationError):
            PromptRegistry.save(a, {"image_prompt_template": "{foo}", "negative_prompt": "blur"})
        assert PromptRegistry.get_negative_prompt(a) == DEFAULTS["negative_prompt"]

"""Prompts: the template with its placeholders explained, the live preview, reset, and refusals."""

import pytest
from markupsafe import escape

from jobs.prompts import DEFAULTS, PromptRegistry
from models import AIPrompt, db
from tests import factories
from tests.page_helpers import Staff, section

PAGE = "/thinker/prompts"
PREVIEW = PAGE + "/preview"


@pytest.fixture
def owner(client, personas):
    return Staff(client, personas.owner)


def prompt(name, account="A"):
    with db.connection_context():
        return PromptRegistry.get(name, factories.account_id(account))


def test_the_page_explains_the_three_placeholders_and_previews_as_you_type(owner):
    html = owner.get(PAGE).get_data(as_text=True)
    for placeholder in ("{post_title}", "{image_prompt}", "{image_type}"):
        assert f"<code>{placeholder}</code>" in html
    template = section(html, "image_prompt_template")
    assert f'hx-post="{PREVIEW}"' in template and 'hx-trigger="keyup changed delay:300ms, change"' in template
    assert '<label for="image_prompt_template">' in html and '<label for="negative_prompt">' in html
    assert "OpenAI" in section(html, "negative-help") and "ignore" in section(html, "negative-help")
    assert DEFAULTS["negative_prompt"] in html


def test_the_preview_renders_the_template_for_the_accounts_newest_article(owner):
    with db.connection_context():
        a = factories.account_id("A")
    factories.article(a, title="Kites", prompts=("A red kite",))
    factories.settings(a, image_type="cartoon")
    response = owner.post(PREVIEW, {"image_prompt_template": "{image_type} of {image_prompt} for {post_title}"})
    assert response.status_code == 200
    assert "cartoon of A red kite for Kites" in response.get_data(as_text=True)


def test_the_preview_names_an_unsafe_placeholder(owner):
    html = owner.post(PREVIEW, {"image_prompt_template": "A {post_title.__class__} picture"}).get_data(as_text=True)
    assert "{post_title.__class__}" in html and "not allowed" in html


def test_the_preview_works_before_there_is_any_article(owner):
    html = owner.post(PREVIEW, {"image_prompt_template": "{post_title}"}).get_data(as_text=True)
    assert "A weekend in Lisbon" in html


def test_saving_stores_both_prompts(owner):
    response = owner.post(PAGE, {"image_prompt_template": "{image_prompt}, {image_type}", "negative_prompt": "blur",
                                 "action": "save"})
    assert response.status_code == 200 and "Prompts saved." in response.get_data(as_text=True)
    assert prompt("image_prompt_template") == "{image_prompt}, {image_type}"
    assert prompt("negative_prompt") == "blur"


@pytest.mark.parametrize("template,named", [
    ("A {post_title.__class__} picture", "{post_title.__class__}"),
    ("{author}", "{author}"),
    ("{image_prompt:>10}", "{image_prompt:>10}"),
    ("{image_prompt!r}", "{image_prompt!r}"),
])
def test_a_template_with_an_unknown_or_unsafe_placeholder_is_refused_naming_it(owner, template, named):
    response = owner.post(PAGE, {"image_prompt_template": template, "negative_prompt": "x", "action": "save"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    error = section(html, "template-error")
    assert escape(named) in error
    assert f">{escape(template)}</textarea>" in html  # what was typed stays in the box
    assert prompt("image_prompt_template") == DEFAULTS["image_prompt_template"]
    assert prompt("negative_prompt") == DEFAULTS["negative_prompt"]  # nothing saved


def test_an_unmatched_brace_is_refused(owner):
    response = owner.post(PAGE, {"image_prompt_template": "A {picture", "negative_prompt": "", "action": "save"})
    assert response.status_code == 422 and "unmatched brace" in response.get_data(as_text=True)


def test_reset_brings_back_the_default_and_keeps_the_other_field_as_typed(owner):
    owner.post(PAGE, {"image_prompt_template": "{image_prompt}", "negative_prompt": "blur", "action": "save"})
    response = owner.post(PAGE, {"image_prompt_template": "{image_prompt}", "negative_prompt": "blur, noise",
                                 "action": "reset:image_prompt_template"})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "back to the default" in html
    assert prompt("image_prompt_template") == DEFAULTS["image_prompt_template"]
    assert ">blur, noise</textarea>" in html and prompt("negative_prompt") == "blur"


def test_saving_the_default_text_stores_nothing_of_its_own(owner):
    owner.post(PAGE, {**DEFAULTS, "action": "save"})
    with db.connection_context():
        assert {row.prompt_value for row in AIPrompt.select()} <= {""}


def test_saving_or_previewing_without_a_csrf_token_is_refused(owner):
    assert owner.post(PAGE, {"image_prompt_template": "{image_prompt}"}, csrf=False).status_code == 403
    assert owner.post(PREVIEW, {"image_prompt_template": "{image_prompt}"}, csrf=False).status_code == 403
    assert prompt("image_prompt_template") == DEFAULTS["image_prompt_template"]


def test_each_account_has_its_own_prompts(client, personas):
    Staff(client, personas.owner).post(PAGE, {"image_prompt_template": "A: {image_prompt}", "negative_prompt": "",
                                              "action": "save"})
    outsider = Staff(client, personas.outsider)
    assert "A: {image_prompt}" not in outsider.get(PAGE).get_data(as_text=True)
    assert prompt("image_prompt_template", "B") == DEFAULTS["image_prompt_template"]


def test_resetting_something_unknown_is_a_400(owner):
    assert owner.post(PAGE, {"action": "reset:password"}).status_code == 400

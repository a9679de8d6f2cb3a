"""`GenerateImagesFromPromptsFunction`, method by method (the plan's 6.1), run inline."""

from decimal import Decimal

import pytest

from jobs.errors import AIFunctionError, NotFound, ValidationError
from jobs.functions.generate_images_from_prompts import GenerateImagesFromPromptsFunction
from jobs.prompts import PromptRegistry
from models import Images, db
from tests import factories

fn = GenerateImagesFromPromptsFunction()


@pytest.fixture
def a(personas):
    with db.connection_context():
        account = factories.account_id("A")
    factories.settings(account, provider="placeholder", model="placeholder-v1", image_format="png")
    return account


@pytest.fixture
def conn(database):
    """Queries connect on first use (peewee autoconnect); the autouse clean_state closes it after."""
    return database


def test_name_and_metadata_follow_the_plan():
    assert fn.get_name() == "generate_images_from_prompts"
    meta = fn.get_metadata()
    assert meta["display_name"] == "Generate Images from Prompts"
    # The plan's phases, in order, with the plan's labels.
    assert meta["phases"] == {
        "INIT": "Validating image prompts...",
        "PREP": "Preparing image generation queue...",
        "AI_CALL": "Generating images with AI...",
        "PARSE": "Processing image URLs...",
        "SAVE": "Saving image URLs...",
        "DONE": "Images generated!",
    }
    assert list(meta["phases"]) == ["INIT", "PREP", "AI_CALL", "PARSE", "SAVE", "DONE"]
    assert fn.requires_multiple_ai_calls is True


def test_messages_count_images():
    assert fn.progress_message("PREP", total=5) == "Preparing to generate 5 images"
    assert fn.progress_message("PREP", total=1) == "Preparing to generate 1 image"
    assert fn.progress_message("AI_CALL", index=2, total=5) == "Generating image 2 of 5 with AI"
    assert fn.progress_message("PARSE", done=5) == "5 images generated"
    assert fn.progress_message("SAVE", done=5) == "Saving 5 images"
    assert fn.progress_message("DONE", done=5) == "5 images generated successfully"
    assert fn.progress_message("DONE", done=4, failed=1) == "4 images generated, 1 failed"


def test_validate_keeps_pending_images_with_prompts(a, conn):
    _, ids = factories.article(a)
    validated = fn.validate({"ids": ids}, a)
    assert (validated["ids"], validated["skipped"], validated["regenerate"]) == (ids, [], False)
    assert validated["limits"].key == f"{a}:placeholder"  # the key a new request unblocks


def test_validate_refuses_ids_of_another_account_like_missing_ones(a, conn):
    _, ids = factories.article(factories.account_id("B"))
    with pytest.raises(NotFound, match=f"No image with id {ids[0]}"):
        fn.validate({"ids": [ids[0]]}, a)


def test_validate_skips_wrong_status_and_images_beyond_the_configured_count(a, conn):
    _, ids = factories.article(a, prompts=("f", "one", "two", "three"))
    factories.settings(a, max_in_article_images=2)
    Images.update(status="generated").where(Images.id == ids[0]).execute()
    result = fn.validate({"ids": ids}, a)
    assert result["ids"] == [ids[1], ids[2]]
    reasons = {s["id"]: s["reason"] for s in result["skipped"]}
    assert "regenerate" in reasons[ids[0]] and "beyond the 2 configured" in reasons[ids[3]]


def test_claim_takes_each_image_once(a, conn):
    _, ids = factories.article(a)
    validated = fn.validate({"ids": ids}, a)
    assert fn.claim(validated, "task-1", a) == ids
    with pytest.raises(ValidationError, match="already being generated"):
        fn.claim(validated, "task-2", a)
    assert {i.task_id for i in factories.images(ids)} == {"task-1"}


def test_prepare_orders_featured_first_then_by_position_and_loads_templates(a, conn):
    content, ids = factories.article(a)
    extra = Images.create(account=a, content=content, image_type="in_article", position=0, prompt="first in-article")
    PromptRegistry.save(a, {"negative_prompt": "no text"})
    data = fn.prepare({"ids": [ids[2], extra.id, ids[1], ids[0]]}, a)
    assert [i.id for i in data.items] == [ids[0], extra.id, ids[1], ids[2]]
    assert data.settings.provider == "placeholder" and data.negative_prompt == "no text"
    assert "{image_prompt}" in data.image_prompt_template


def test_prepare_without_settings_is_a_validation_error(conn, personas):
    with pytest.raises(ValidationError, match="No active image-generation settings"):
        fn.prepare({"ids": [1]}, factories.account_id("B"))


def test_build_prompt_fills_the_template_and_picks_the_size(a, conn):
    _, ids = factories.article(a, title="Tea & {image_type.__class__}")
    PromptRegistry.save(a, {"image_prompt_template": "{image_type} | {post_title} | {image_prompt}"})
    data = fn.prepare({"ids": ids}, a)
    call = fn.build_prompt(data.for_item(data.items[0]), a)
    assert call.method == "generate_image"
    assert call.kwargs["prompt"] == "realistic | Tea & {image_type.__class__} | A lighthouse at dusk"
    assert call.kwargs["size"] == "1536x864"  # featured: 16:9 by default
    assert call.kwargs["function_name"] == "generate_images_from_prompts"
    assert (call.kwargs["output_format"], call.kwargs["output_compression"]) == ("png", None)  # PNG is lossless
    in_article = fn.build_prompt(data.for_item(data.items[1]), a)
    assert in_article.kwargs["size"] == "1536x1024"  # in-article: 3:2 by default
    factories.settings(a, sizes={"in_article": "1024x1024"})
    data = fn.prepare({"ids": ids}, a)
    assert fn.build_prompt(data.for_item(data.items[1]), a).kwargs["size"] == "1024x1024"


def test_build_prompt_uses_the_meta_title_when_there_is_no_title(a, conn):
    content, ids = factories.article(a, title="x", meta_title="Meta only")
    content.title = ""
    content.save()
    data = fn.prepare({"ids": ids}, a)
    assert "Meta only" in fn.build_prompt(data.for_item(data.items[0]), a).kwargs["prompt"]


def test_build_prompt_refuses_an_unsafe_template_forced_into_the_database(a, conn):
    from models import AIPrompt

    AIPrompt.create(account=a, prompt_type="image_prompt_template", prompt_value="{post_title.__class__}")
    _, ids = factories.article(a)
    data = fn.prepare({"ids": ids}, a)
    with pytest.raises(ValidationError, match="not allowed"):
        fn.build_prompt(data.for_item(data.items[0]), a)


def test_parse_response_takes_url_or_bytes_and_refuses_neither():
    parsed = fn.parse_response({"url": "https://x/y.png", "bytes": None, "request_id": "r", "cost": Decimal("0.04"),
                                "download_hosts": ("x",)})
    assert parsed["url"] == "https://x/y.png" and parsed["download_hosts"] == ("x",)
    with pytest.raises(AIFunctionError, match="without an image"):
        fn.parse_response({"url": None, "bytes": None})


def test_save_output_stores_the_bytes_then_marks_generated(a, conn):
    from jobs.ai_core import AICore
    from jobs.engine import new_task_id

    task_id = new_task_id()
    _, ids = factories.article(a)
    validated = fn.validate({"ids": ids[:1]}, a)
    fn.claim(validated, task_id, a)
    assert fn.begin_item(ids[0], task_id, a)
    data = fn.prepare({"ids": ids[:1], "task_id": task_id}, a)
    call = fn.build_prompt(data.for_item(data.items[0]), a)
    response = AICore().generate_image(**call.kwargs)
    fn.record_answer(data.for_item(data.items[0]), response)
    # The answer waits in storage's staging area, the cost on the row: what the SAVE job starts from.
    data = fn.prepare({"ids": ids[:1], "task_id": task_id}, a)
    data = data.for_item(data.items[0])
    assert data.item.answer_key and data.item.cost == 0
    kept = fn.answer_of(data)
    assert kept["bytes"] == response["bytes"]
    parsed = fn.parse_response(kept)
    result = fn.save_output(parsed, data, a)
    assert result["count"] == 1
    image = factories.image(ids[0])
    assert image.status == "generated" and image.image_format == "png" and image.file_size > 0
    assert image.image_url.startswith(f"/media/images/{ids[0]}.png?v=") and image.cost == 0
    assert image.answer_key is None  # stored: the staged answer is gone
    # Running it again (a retry after a lost answer) stores the same file and charges nothing more.
    again = fn.save_output(parsed, data, a)
    assert again["count"] == 0 and factories.image(ids[0]).file_path == image.file_path


def test_begin_item_refuses_a_generated_image_and_another_tasks_image(a, conn):
    _, ids = factories.article(a)
    fn.claim(fn.validate({"ids": ids}, a), "t1", a)
    assert not fn.begin_item(ids[0], "other-task", a)
    Images.update(status="generated").where(Images.id == ids[0]).execute()
    assert not fn.begin_item(ids[0], "t1", a)
    assert fn.begin_item(ids[1], "t1", a) and factories.image(ids[1]).attempts == 1


def test_fail_item_records_the_reason(a, conn):
    _, ids = factories.article(a)
    fn.claim(fn.validate({"ids": ids}, a), "t1", a)
    fn.fail_item(ids[0], "t1", a, "Runware: invalid API key")
    image = factories.image(ids[0])
    assert image.status == "failed" and image.error == "Runware: invalid API key"

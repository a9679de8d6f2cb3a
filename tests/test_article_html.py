"""`GET /v1/writer/content/<id>/html/`: the stored (sanitized) body with its generated images placed —
featured first, in-article image k after the k-th <h2>, else the k-th paragraph, else at the end;
desktop and mobile as one <picture>; every inserted value escaped and the body never rewritten."""

import re
from urllib.parse import urlsplit

import pytest

from models import Content, Images, db
from tests import factories, flow
from tests.api_helpers import ApiClient


@pytest.fixture
def api(client, personas):
    return ApiClient(client, personas.owner)


SLOTS = {"featured": "featured", "in_article": "in", "desktop": "desktop", "mobile": "mobile"}


def article(body: str, *specs, account="A") -> tuple[int, dict]:
    """An article with that body and generated images (image_type, position, **fields); its id and
    each image's label ("featured", "in1", "desktop"…) by public key."""
    with db.connection_context():
        a = factories.account_id(account)
        content = Content.create(account=a, title="Kites", slug="kites", body=body)
        labels = {}
        for n, (image_type, position, *fields) in enumerate(specs, start=1):
            values = {"status": "generated", "image_format": "webp", "width": 1536, "height": 1024,
                      "file_path": f"acct-{a}/images/{n}-{n:016x}.webp", "public_key": f"{n:032x}",
                      "alt_text": f"alt {n}", **(fields[0] if fields else {})}
            Images.create(account=a, content=content, image_type=image_type, position=position, prompt=f"p{n}",
                          **values)
            labels[values["public_key"]] = SLOTS[image_type] + (str(position) if image_type == "in_article" else "")
    return content.id, labels


def html_of(api, content_id) -> str:
    answer = api.get(f"/v1/writer/content/{content_id}/html/")
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "text/html; charset=utf-8"
    return answer.get_data(as_text=True)


def layout(html: str, labels: dict) -> str:
    """The HTML with each inserted figure shown as [its label]."""
    def label(match):
        return "[" + labels[re.search(r'/p/([0-9a-f]{32})\.webp', match.group(0)).group(1)] + "]"

    return re.sub(r"\n?<figure>.*?</figure>\n?", label, html, flags=re.S)


def test_the_featured_image_comes_first_and_in_article_images_after_their_headings(api):
    content_id, labels = article("<p>Intro</p><h2>One</h2><p>a</p><h2>Two</h2><p>b</p><h2>Three</h2>",
                                 ("in_article", 2), ("featured", 0), ("in_article", 1))
    assert layout(html_of(api, content_id), labels) == \
        "[featured]<p>Intro</p><h2>One</h2>[in1]<p>a</p><h2>Two</h2>[in2]<p>b</p><h2>Three</h2>"


def test_without_enough_headings_they_go_after_paragraphs_then_at_the_end(api):
    content_id, labels = article("<p>a</p>\n<p>b</p>\n<p>c</p>", ("in_article", 1), ("in_article", 2),
                                 ("in_article", 5))
    assert layout(html_of(api, content_id), labels) == "<p>a</p>[in1]\n<p>b</p>[in2]\n<p>c</p>[in5]"


def test_images_keep_their_order_when_some_go_by_heading_and_some_by_paragraph(api):
    # Two headings' worth of images, one heading: image 2 would be after paragraph 2, above image 1.
    content_id, labels = article("<p>a</p><p>b</p><h2>H</h2><p>c</p>", ("in_article", 1), ("in_article", 2))
    assert layout(html_of(api, content_id), labels) == "<p>a</p><p>b</p><h2>H</h2>[in1][in2]<p>c</p>"


def test_paragraphs_in_lists_quotes_and_tables_are_not_the_articles_own(api):
    content_id, labels = article(
        "<blockquote><p>quoted</p></blockquote><ul><li><p>item</p></li></ul><table><tr><td><p>cell</p></td></tr>"
        "</table><p>own</p><section><p>in a section</p></section>", ("in_article", 1), ("in_article", 2))
    assert layout(html_of(api, content_id), labels) == (
        "<blockquote><p>quoted</p></blockquote><ul><li><p>item</p></li></ul><table><tr><td><p>cell</p></td></tr>"
        "</table><p>own</p>[in1]<section><p>in a section</p>[in2]</section>")


def test_headings_inside_sections_count_and_unclosed_paragraphs_end_where_html_ends_them(api):
    content_id, labels = article("<section><h2>S</h2><p>x</p></section>", ("in_article", 1))
    assert layout(html_of(api, content_id), labels) == "<section><h2>S</h2>[in1]<p>x</p></section>"
    content_id, labels = article("<p>a<p>b<div>c</div>", ("in_article", 1), ("in_article", 2))
    assert layout(html_of(api, content_id), labels) == "<p>a[in1]<p>b[in2]<div>c</div>"


def test_an_empty_body_gets_its_images_in_order(api):
    content_id, labels = article("", ("in_article", 1), ("featured", 0), ("in_article", 2))
    assert layout(html_of(api, content_id), labels) == "[featured][in1][in2]"


def test_each_image_is_a_figure_with_escaped_alt_text_size_and_caption(api):
    content_id, _ = article("<h2>One</h2>",
                            ("featured", 0, {"alt_text": 'A "kite" <script>alert(1)</script> & more',
                                             "caption": "Kites & <b>wind</b>"}),
                            ("in_article", 1, {"alt_text": "", "caption": "  ", "width": 1024, "height": 768}))
    html = html_of(api, content_id)
    assert (
        '<figure><img src="http://localhost/p/00000000000000000000000000000001.webp" '
        'alt="A &quot;kite&quot; &lt;script&gt;alert(1)&lt;/script&gt; &amp; more" width="1536" height="1024" '
        'loading="lazy"><figcaption>Kites &amp; &lt;b&gt;wind&lt;/b&gt;</figcaption></figure>') in html
    assert (
        '<h2>One</h2>\n<figure><img src="http://localhost/p/00000000000000000000000000000002.webp" alt="" '
        'width="1024" height="768" loading="lazy"></figure>') in html  # a blank caption is no caption
    assert "<script>" not in html and "<b>" not in html


def test_desktop_and_mobile_images_together_are_one_picture(api):
    content_id, _ = article("<p>a</p>", ("desktop", 0, {"width": 1536, "height": 864}),
                            ("mobile", 0, {"width": 864, "height": 1536, "alt_text": "Tall kite", "caption": "Both"}))
    html = html_of(api, content_id)
    assert html == (
        '\n<figure><picture><source media="(min-width: 768px)" '
        'srcset="http://localhost/p/00000000000000000000000000000001.webp" width="1536" height="864">'
        '<img src="http://localhost/p/00000000000000000000000000000002.webp" alt="Tall kite" width="864" '
        'height="1536" loading="lazy"></picture><figcaption>Both</figcaption></figure>\n<p>a</p>')


def test_a_desktop_image_alone_is_a_plain_figure(api):
    content_id, labels = article("<p>a</p>", ("featured", 0), ("desktop", 0))
    html = html_of(api, content_id)
    assert "<picture>" not in html and layout(html, labels) == "[featured][desktop]<p>a</p>"


def test_only_generated_images_with_a_public_url_are_placed(api):
    content_id, labels = article(
        "<h2>One</h2><h2>Two</h2><h2>Three</h2><h2>Four</h2>", ("in_article", 1),
        ("in_article", 2, {"status": "pending"}), ("in_article", 3, {"status": "failed"}),
        ("in_article", 4, {"status": "generating"}), ("featured", 0, {"public_key": None}))
    assert layout(html_of(api, content_id), labels) == "<h2>One</h2>[in1]<h2>Two</h2><h2>Three</h2><h2>Four</h2>"


def test_the_body_is_never_unescaped_or_rewritten(api):
    body = ('<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp;amp; &#60;img src=x onerror=alert(1)&#62; '
            '&quot;q&quot;</p>\n<h2 id="a">T&lt;i&gt;</h2><p class="x">caf&eacute; <a href="/x?a=1&amp;b=2">l</a></p>')
    content_id, labels = article(body, ("featured", 0), ("in_article", 1), ("in_article", 2))
    html = html_of(api, content_id)
    assert "<script>" not in html and "<img src=x" not in html
    assert re.sub(r"\n?<figure>.*?</figure>\n?", "", html, flags=re.S) == body  # the body, byte for byte
    assert layout(html, labels).startswith("[featured]<p>&lt;script&gt;")


def test_another_accounts_article_answers_like_a_missing_one(api):
    content_id, _ = article("<p>theirs</p>", ("featured", 0), account="B")
    theirs, missing = api.get(f"/v1/writer/content/{content_id}/html/"), api.get("/v1/writer/content/999999/html/")
    assert theirs.status_code == missing.status_code == 404 and theirs.get_json() == missing.get_json()


@pytest.mark.worker
def test_generated_images_are_placed_with_working_public_urls(app, api, worker):
    saved = api.put(flow.SETTINGS, json={"provider": "placeholder", "model": "placeholder-v1",
                                              "image_format": "webp"})
    assert saved.status_code == 200
    created = api.post("/v1/writer/content/", json={"title": "Kites", "images": [
        {"image_type": "featured", "position": 0, "prompt": "A red kite"},
        {"image_type": "in_article", "position": 1, "prompt": "A beach"}]}).get_json()
    with db.connection_context():
        Content.update(body="<p>Intro</p><h2>On the beach</h2><p>Sand.</p>").where(
            Content.id == created["id"]).execute()
        Images.update(alt_text="Children on a beach", caption="Summer").where(
            Images.id == created["images"][1]["id"]).execute()
    final = flow.wait_done(api, flow.generate(api, [i["id"] for i in created["images"]]))
    assert final["state"] == "done"
    html = html_of(api, created["id"])
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert len(sources) == 2 and html.index("<p>Intro</p>") > html.index(sources[0])
    assert f'<h2>On the beach</h2>\n<figure><img src="{sources[1]}" alt="Children on a beach"' in html
    assert "<figcaption>Summer</figcaption>" in html
    reader = app.test_client()
    for src in sources:
        answer = reader.get(urlsplit(src).path)
        assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/webp"


def test_a_hostile_body_sent_through_the_api_comes_out_of_the_html_endpoint_sanitized(api):
    hostile = ('<p onclick="steal()">Hello <a href="javascript:alert(1)">click</a></p><script>alert(2)</script>'
               '<img src="x" onerror="alert(3)"><iframe src="https://evil.test/"></iframe><h2>Section</h2><p>Fine</p>')
    created = api.post("/v1/writer/content/", json={"title": "Hostile", "body": hostile})
    assert created.status_code == 201, created.get_json()
    html = html_of(api, created.get_json()["id"])
    assert "Hello" in html and "<h2>Section</h2>" in html and "Fine" in html
    for bad in ("<script", "javascript:", "onerror", "onclick", "<iframe", "evil.test", "alert("):
        assert bad not in html, bad

"""Importing many articles: from JSON or CSV, all of them are created or none, and an error names the
article (`articles[3]...`) or the CSV line it is about."""

import pytest

from jobs.errors import ValidationError
from models import Content, Images, db
from tests import factories
from tests.api_helpers import ApiClient
from webapp import importer

IMPORT = "/v1/writer/content/import/"


@pytest.fixture
def api(client, personas):
    return ApiClient(client, personas.owner)


@pytest.fixture
def a(personas):
    with db.connection_context():
        return factories.account_id("A")


def counts():
    with db.connection_context():
        return Content.select().count(), Images.select().count()


def article(n: int) -> dict:
    return {"title": f"Article {n}", "meta_title": f"Meta {n}", "body": f"<p>Body {n}</p><script>x()</script>",
            "images": [{"image_type": "featured", "position": 0, "prompt": f"Featured {n}"},
                       {"image_type": "in_article", "position": 1, "prompt": f"Scene {n}"}]}


def test_fifty_articles_from_json_are_all_created_in_order(api):
    response = api.post(IMPORT, json={"articles": [article(n) for n in range(50)]})
    assert response.status_code == 201, response.get_json()
    created = response.get_json()["created"]
    assert len(created) == 50 and counts() == (50, 100)
    for n in (0, 49):
        shown = api.get(f"/v1/writer/content/{created[n]}/").get_json()
        assert shown["title"] == f"Article {n}" and shown["body"] == f"<p>Body {n}</p>"
        assert [i["prompt"] for i in shown["images"]] == [f"Featured {n}", f"Scene {n}"]
        assert shown["images"][0]["alt_text"] == f"Featured {n}"


@pytest.mark.parametrize("bad, needle", [
    ({"images": [{"image_type": "banner", "prompt": "x"}]}, "articles[3].images[0].image_type must be one of"),
    ({"title": ""}, "articles[3].title must be a non-empty string"),
    ({"body": "x", "body_format": "rst"}, "articles[3].body_format must be one of"),
    ({"images": [{"image_type": "in_article", "position": 1}, {"image_type": "in_article", "position": 1}]},
     "articles[3].images[1] and articles[3].images[0] share the same in-article position 1"),
    # Fits the shape, not the account's settings (3 in-article images unless they say otherwise).
    ({"images": [{"image_type": "in_article", "position": 4, "prompt": "x"}]}, "articles[3].images[0].position"),
])
def test_one_invalid_article_creates_nothing_and_is_named(api, bad, needle):
    articles = [article(n) for n in range(10)]
    articles[3] = {**articles[3], **bad}
    response = api.post(IMPORT, json={"articles": articles})
    assert response.status_code == 400, response.get_json()
    assert needle in response.get_json()["error"], response.get_json()
    assert counts() == (0, 0)


@pytest.mark.parametrize("body, needle", [
    ({}, "non-empty list"), ({"articles": []}, "non-empty list"), ({"articles": "x"}, "non-empty list"),
    ({"articles": [article(0), 7]}, "articles[1] must be an object"),
    ({"articles": [article(0)] * 501}, "At most 500 articles"),
])
def test_a_malformed_import_is_a_400(api, body, needle):
    response = api.post(IMPORT, json=body)
    assert response.status_code == 400 and needle in response.get_json()["error"]
    assert counts() == (0, 0)


def test_a_failure_while_creating_rolls_every_article_back(a, monkeypatch):
    made = []
    real = importer.writer.create_checked

    def fails_on_the_third(account_id, spec):
        if len(made) == 2:
            raise RuntimeError("the database went away")
        made.append(spec)
        return real(account_id, spec)

    monkeypatch.setattr(importer.writer, "create_checked", fails_on_the_third)
    with db.connection_context(), pytest.raises(RuntimeError):
        importer.create_all(a, [article(n) for n in range(5)])
    assert len(made) == 2 and counts() == (0, 0)


CSV = """title,meta_title,image_type,position,prompt
Tea,All about tea,featured,0,A teapot
Tea,All about tea,in_article,1,"Leaves, close up"
Coffee,,featured,,Beans

Tea,All about tea,in-article,,A cup
Coffee,,in_article,2,"A long
prompt over two lines"
Cocoa,,,,
"""


def test_a_csv_is_grouped_into_articles_in_order(a):
    with db.connection_context():
        articles = importer.parse_csv(CSV)
        assert [(x["title"], x["meta_title"]) for x in articles] == [("Tea", "All about tea"), ("Coffee", ""),
                                                                    ("Cocoa", "")]
        ids = importer.create_all(a, articles)
        tea, coffee, cocoa = (list(factories.writer.content_images(a, i)) for i in ids)
    assert [(i.image_type, i.position, i.prompt) for i in tea] == [
        ("featured", 0, "A teapot"), ("in_article", 1, "Leaves, close up"), ("in_article", 2, "A cup")]
    assert [(i.image_type, i.position) for i in coffee] == [("featured", 0), ("in_article", 2)]
    assert coffee[1].prompt == "A long\nprompt over two lines" and cocoa == []


def test_a_csv_import_through_the_api(api):
    response = api.client.post(IMPORT, data=("\ufeff" + CSV.split("\n", 1)[1]).encode(),
                               headers={**api.headers, "Content-Type": "text/csv"})
    assert response.status_code == 201, response.get_json()
    assert len(response.get_json()["created"]) == 3 and counts() == (3, 5)


def test_a_csv_without_a_header_uses_the_column_order(a):
    with db.connection_context():
        articles = importer.parse_csv("Kites,,featured,0,A kite\r\nKites,,in_article,1,Wind\r\n")
    assert articles[0]["title"] == "Kites" and len(articles[0]["images"]) == 2


@pytest.mark.parametrize("text, needle", [
    ("title,meta_title,image_type,position,prompt\nTea,,featured,0,a\nTea,,banner,1,b\n",
     "line 3: image_type must be one of"),
    ("title,meta_title,image_type,position,prompt\nTea,,featured,0,a\n\n\nTea,,in_article,one,b\n",
     "line 5: position must be a whole number"),
    ('title,meta_title,image_type,position,prompt\n"Two\nlines",,featured,0,a\nTea,,featured,x\n',
     "line 4: expected 5 columns"),
    ("Tea,,featured,0,a\n,,featured,0,b\n", "line 2: title is empty"),
    ("Tea,,featured,0,a\nTea,,featured,0,b\n", "line 2 and line 1 share the same slot"),
    ("Tea,,featured,2,a\n", "line 1: position must be 0 for a featured image"),
    ("Tea,,featured,0," + "p" * 8001 + "\n", "line 1: prompt is 8001 characters"),
    ("title,prompt\n", "The CSV has no articles"),
    ("Tea,,featured,0,a\x00\n", "NUL"),
])
def test_a_bad_csv_row_is_named_by_its_line(api, text, needle):
    with pytest.raises(ValidationError) as refused:
        importer.parse_csv(text)
    assert needle in refused.value.message, refused.value.message
    response = api.client.post(IMPORT, data=text.encode(), headers={**api.headers, "Content-Type": "text/csv"})
    assert response.status_code == 400 and needle in response.get_json()["error"]
    assert counts() == (0, 0)


def test_a_csv_row_beyond_the_accounts_limit_is_named_by_its_line_and_creates_nothing(a):
    text = "Tea,,featured,0,a\nCoffee,,featured,0,b\nCoffee,,in_article,4,c\n"
    with db.connection_context():
        articles = importer.parse_csv(text)  # fits any account's settings up to 5
        with pytest.raises(ValidationError, match=r"line 3: position must be a whole number from 1 to 3"):
            importer.create_all(a, articles)
    assert counts() == (0, 0)


def test_a_csv_that_is_not_utf8_is_a_400(api):
    response = api.client.post(IMPORT, data=b"Caf\xe9,,featured,0,a\n",
                               headers={**api.headers, "Content-Type": "text/csv"})
    assert response.status_code == 400 and "UTF-8" in response.get_json()["error"]

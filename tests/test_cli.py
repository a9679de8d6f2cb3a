import schema
from models import Account, Content, Images, User, db


def test_init_db_is_idempotent(runner, database):
    first = runner.invoke(args=["init-db"])
    second = runner.invoke(args=["init-db"])
    assert first.exit_code == 0 and second.exit_code == 0
    assert "up to date" in second.output
    with db.connection_context():
        assert schema.current_version() == schema.MIGRATIONS[-1][0]


def test_seed_demo_twice_changes_nothing(runner, database):
    first = runner.invoke(args=["seed-demo"])
    assert first.exit_code == 0, first.output
    with db.connection_context():
        counts = (Account.select().count(), User.select().count(), Content.select().count(),
                  Images.select().count())
    second = runner.invoke(args=["seed-demo"])
    assert second.exit_code == 0
    with db.connection_context():
        assert counts == (Account.select().count(), User.select().count(), Content.select().count(),
                          Images.select().count())
        assert counts[2] == 3
        for content in Content.select():
            images = list(content.images)
            assert sum(i.image_type == "featured" for i in images) == 1
            assert 2 <= sum(i.image_type == "in_article" for i in images) <= 3
            assert all(i.status == "pending" and i.prompt for i in images)
    assert first.output == second.output  # the same printed logins
    assert "admin@example.com" in first.output and "password:" in first.output


def test_create_user_creates_the_account_when_missing(runner, database):
    result = runner.invoke(args=["create-user", "new@c.test", "--password", "pw123456", "--admin",
                                 "--account", "C"])
    assert result.exit_code == 0, result.output
    with db.connection_context():
        user = User.get(User.email == "new@c.test")
        assert user.is_admin and user.account.name == "C"
    again = runner.invoke(args=["create-user", "new@c.test", "--password", "x"])
    assert again.exit_code != 0 and "already exists" in again.output


def test_create_token_for_unknown_email_fails(runner, database):
    result = runner.invoke(args=["create-token", "nobody@x.test"])
    assert result.exit_code != 0
    assert "No user" in result.output


def test_generate_images_command_queues_and_waits_until_the_end(runner, personas, worker):
    from tests import factories

    with db.connection_context():
        account = factories.account_id("A")
    factories.settings(account, provider="placeholder")
    content, ids = factories.article(account)
    result = runner.invoke(args=["generate-images", "--content", str(content.id), "--wait"])
    assert result.exit_code == 0, result.output
    assert "3 images queued" in result.output
    assert "3 images generated successfully" in result.output
    assert [i.status for i in factories.images(ids)] == ["generated"] * 3
    again = runner.invoke(args=["generate-images", "--content", str(content.id)])
    assert again.exit_code != 0 and "Nothing to generate" in again.output

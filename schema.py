"""Create or upgrade the database schema: a short, ordered list of versioned migrations.

`flask --app webapp init-db` (the Procfile's release step) runs `upgrade()`; running it again
changes nothing. A new schema change is one more function appended to MIGRATIONS.
"""

from peewee import DateTimeField, IntegerField, Model, fn
from playhouse.migrate import migrate

from models import (
    ALL_MODELS,
    AITaskLog,
    ApiToken,
    Content,
    ImageAttempt,
    Images,
    IntegrationSettings,
    ModelNotice,
    PublicImage,
    User,
    WebhookDelivery,
    db,
    utcnow,
)


class SchemaVersion(Model):
    version = IntegerField(primary_key=True)
    applied_at = DateTimeField(default=utcnow)

    class Meta:
        database = db
        table_name = "schema_version"


def _initial(migrator):
    db.create_tables(ALL_MODELS, safe=True)


def _request_ids_and_model_notices(migrator):
    columns = {c.name for c in db.get_columns(Images._meta.table_name)}
    operations = [migrator.add_column(Images._meta.table_name, field.column_name, field)
                  for field in (Images.provider_request_id, Images.charge_uncertain)
                  if field.column_name not in columns]
    migrate(*operations)
    db.create_tables([ModelNotice], safe=True)


def _roles(migrator):
    if "expires_at" not in {c.name for c in db.get_columns(ApiToken._meta.table_name)}:
        migrate(migrator.add_column(ApiToken._meta.table_name, "expires_at", ApiToken.expires_at))
    columns = {c.name for c in db.get_columns(User._meta.table_name)}
    if "session_version" not in columns:
        migrate(migrator.add_column(User._meta.table_name, "session_version", User.session_version))
    if "role" not in columns:
        migrate(migrator.add_column(User._meta.table_name, "role", User.role))
        # Everyone could change the settings before roles: keep that for platform admins and for each
        # account's first user, so no account is left without a manager.
        first = User.select(User.account, fn.MIN(User.id)).group_by(User.account)
        User.update(role="manager").where(User.is_admin | User.id.in_([row[1] for row in first.tuples()])).execute()


def _answer_keys(migrator):
    if "answer_key" not in {c.name for c in db.get_columns(Images._meta.table_name)}:
        migrate(migrator.add_column(Images._meta.table_name, "answer_key", Images.answer_key))


def _attempts_and_cancel(migrator):
    columns = {c.name for c in db.get_columns(AITaskLog._meta.table_name)}
    migrate(*[migrator.add_column(AITaskLog._meta.table_name, field.column_name, field)
              for field in (AITaskLog.created_by, AITaskLog.canceled_at) if field.column_name not in columns])
    if ImageAttempt.table_exists():
        return
    db.create_tables([ImageAttempt])
    # What was spent before the ledger existed: one attempt per image that holds a charge, so this
    # month's spend and the budgets count it.
    charged = Images.select().where(Images.cost.is_null(False) & Images.task_id.is_null(False))
    for image in charged.iterator():
        ImageAttempt.create(
            account=image.account_id, task_id=image.task_id, image_id=image.id, provider=image.provider,
            model=image.model, cost=image.cost, request_id=image.provider_request_id,
            outcome=image.status if image.status in ("generated", "failed") else None,
            error=image.error, started_at=image.generation_started_at or image.updated_at,
            called_at=image.generation_started_at, charged_at=image.updated_at,
            ended_at=image.updated_at if image.status in ("generated", "failed") else None)


def _workspace(migrator):
    added = []
    for model, fields in ((Content, (Content.body, Content.slug)),
                          (Images, (Images.alt_text, Images.alt_text_edited, Images.title, Images.caption,
                                    Images.file_name, Images.generated_prompt, Images.public_key)),
                          (IntegrationSettings, (IntegrationSettings.webhook_secret_encrypted,))):
        columns = {c.name for c in db.get_columns(model._meta.table_name)}
        added += [migrator.add_column(model._meta.table_name, f.column_name, f) for f in fields
                  if f.column_name not in columns]
    migrate(*added)
    indexes = {i.name for i in db.get_indexes(Images._meta.table_name)}
    if "images_account_id_file_name" not in indexes:
        migrate(migrator.add_index(Images._meta.table_name, ("account_id", "file_name"), True))
    db.create_tables([PublicImage, WebhookDelivery], safe=True)
    # Images made before: they were made from the prompt they have now, and get the default alt text.
    Images.update(generated_prompt=Images.prompt).where((Images.status == "generated")
                                                        & Images.generated_prompt.is_null()).execute()
    from webapp.writer import default_alt_text

    for image in Images.select(Images.id, Images.prompt).where((Images.alt_text == "") & ~Images.alt_text_edited):
        Images.update(alt_text=default_alt_text(image.prompt)).where(Images.id == image.id).execute()


# (version, description, function taking a playhouse.migrate migrator)
MIGRATIONS = [
    (1, "initial schema", _initial),
    (2, "provider request ids, uncertain charges and announced model shutdowns", _request_ids_and_model_notices),
    (3, "user roles (staff, manager), session versions and token expiry", _roles),
    (4, "where a provider's answer waits between its call and its save", _answer_keys),
    (5, "image attempts (the spend ledger), who started a task and its cancel", _attempts_and_cancel),
    (6, "the article workspace: bodies, alt text and file names, public URLs, webhooks", _workspace),
]


def current_version() -> int:
    if not SchemaVersion.table_exists():
        return 0
    row = SchemaVersion.select().order_by(SchemaVersion.version.desc()).first()
    return row.version if row else 0


def upgrade() -> list[str]:
    """Apply the migrations not applied yet; return what was applied."""
    from playhouse.migrate import PostgresqlMigrator, SqliteMigrator

    database = db.obj
    migrator_cls = PostgresqlMigrator if "postgres" in type(database).__name__.lower() else SqliteMigrator
    migrator = migrator_cls(database)
    applied = []
    with database.atomic():
        SchemaVersion.create_table(safe=True)
        done = current_version()
        for version, description, apply in MIGRATIONS:
            if version <= done:
                continue
            apply(migrator)
            SchemaVersion.create(version=version)
            applied.append(f"{version}: {description}")
    return applied

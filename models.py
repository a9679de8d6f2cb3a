"""The database: peewee models shared by the web app and the worker.

Every row that belongs to a customer carries its `account`; the named queries below take the
account so that a caller cannot forget the scope.
"""

import datetime as dt
import json

from peewee import (
    BlobField,
    BooleanField,
    CharField,
    DatabaseProxy,
    DateField,
    DateTimeField,
    DecimalField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)
from playhouse.db_url import connect

db = DatabaseProxy()

IMAGE_TYPES = ("featured", "in_article", "desktop", "mobile")
IMAGE_STATUSES = ("pending", "queued", "generating", "generated", "failed")
TERMINAL_STATUSES = ("generated", "failed")
PROMPT_TYPES = ("image_prompt_template", "negative_prompt")
# staff: articles, prompts, generate; manager: also the account's settings (provider, key, base URL).
ROLES = ("staff", "manager")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def open_database(url: str):
    """Bind the models to the database at `url` (sqlite:///..., postgresql://...)."""
    options = {}
    if url.startswith("sqlite"):
        # WAL lets the web app read while a worker writes; the timeout waits out short write locks.
        options = {"pragmas": {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 10000}}
    database = connect(url, **options)
    db.initialize(database)
    return database


class JSONField(TextField):
    """JSON kept as text, so SQLite and PostgreSQL store it the same way."""

    def db_value(self, value):
        return None if value is None else json.dumps(value, sort_keys=True)

    def python_value(self, value):
        return None if value is None else json.loads(value)


class BaseModel(Model):
    class Meta:
        database = db
        legacy_table_names = False


class Account(BaseModel):
    name = CharField(unique=True)
    created_at = DateTimeField(default=utcnow)


class User(BaseModel):
    account = ForeignKeyField(Account, backref="users", on_delete="CASCADE")
    email = CharField(unique=True)
    password_hash = CharField()
    is_admin = BooleanField(default=False)  # a platform admin: also reaches rq-dashboard
    role = CharField(max_length=20, default="staff", choices=[(r, r) for r in ROLES])
    # Part of every session: logging out raises it, which ends all of the user's sessions at once.
    session_version = IntegerField(default=0)
    created_at = DateTimeField(default=utcnow)

    @property
    def is_manager(self) -> bool:
        return self.role == "manager"


class ApiToken(BaseModel):
    user = ForeignKeyField(User, backref="tokens", on_delete="CASCADE")
    token_hash = CharField(unique=True)
    name = CharField(default="")
    created_at = DateTimeField(default=utcnow)
    last_used_at = DateTimeField(null=True)
    expires_at = DateTimeField(null=True)  # None: until revoked


class Content(BaseModel):
    account = ForeignKeyField(Account, backref="contents", on_delete="CASCADE")
    title = CharField(max_length=500, default="")
    meta_title = CharField(max_length=500, default="")
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("account", "id"), False),)

    @classmethod
    def for_account(cls, account_id):
        return cls.select().where(cls.account == account_id)

    @property
    def display_title(self) -> str:
        return self.title or self.meta_title or f"Article {self.id}"


class Images(BaseModel):
    account = ForeignKeyField(Account, backref="images", on_delete="CASCADE")
    content = ForeignKeyField(Content, backref="images", on_delete="CASCADE")
    image_type = CharField(max_length=20, choices=[(t, t) for t in IMAGE_TYPES])
    position = IntegerField(default=0)
    prompt = TextField(default="")
    status = CharField(max_length=20, default="pending", choices=[(s, s) for s in IMAGE_STATUSES])
    image_url = CharField(max_length=500, null=True)
    provider_url = TextField(null=True)
    revised_prompt = TextField(null=True)
    error = TextField(null=True)
    cost = DecimalField(max_digits=12, decimal_places=6, null=True, auto_round=True)
    provider = CharField(max_length=40, null=True)
    model = CharField(max_length=100, null=True)
    width = IntegerField(null=True)
    height = IntegerField(null=True)
    image_format = CharField(max_length=10, null=True)
    file_path = CharField(max_length=500, null=True)
    file_size = IntegerField(null=True)
    task_id = CharField(max_length=64, null=True)
    # The provider's id of the last call for this image (OpenAI's x-request-id): support asks for it.
    provider_request_id = CharField(max_length=200, null=True)
    # The last call timed out on our side after the provider had the request: it may have been billed.
    charge_uncertain = BooleanField(default=False)
    attempts = IntegerField(default=0)
    generation_started_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = (
            (("account", "content", "image_type", "position"), False),  # the Images page
            (("account", "status"), False),  # status filter
            (("status", "updated_at"), False),  # the stale-claim sweep
            (("task_id",), False),  # task progress and job claims
        )

    @classmethod
    def for_account(cls, account_id):
        return cls.select().where(cls.account == account_id)


class ImageBlob(BaseModel):
    """Stored image bytes for the database storage backend (dynos share no disk)."""

    key = CharField(unique=True, max_length=300)
    data = BlobField()
    content_type = CharField(max_length=50)
    created_at = DateTimeField(default=utcnow)


class IntegrationSettings(BaseModel):
    account = ForeignKeyField(Account, backref="integrations", on_delete="CASCADE")
    integration_type = CharField(max_length=40, default="image_generation")
    is_active = BooleanField(default=True)
    config = JSONField(default=dict)
    # Fernet ciphertext of the provider key; the plain key is never stored.
    api_key_encrypted = TextField(null=True)
    api_key_last4 = CharField(max_length=4, null=True)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("account", "integration_type"), True),)


class ModelNotice(BaseModel):
    """A shutdown date that a provider's own model list announced, as seen with one account's key
    (`flask --app webapp check-models`); the catalog's dates come first."""

    account = ForeignKeyField(Account, backref="model_notices", on_delete="CASCADE")
    provider = CharField(max_length=40)
    model = CharField(max_length=100)
    shutdown_date = DateField(null=True)
    checked_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("account", "provider", "model"), True),)


class AIPrompt(BaseModel):
    account = ForeignKeyField(Account, backref="prompts", on_delete="CASCADE")
    prompt_type = CharField(max_length=40, choices=[(p, p) for p in PROMPT_TYPES])
    prompt_value = TextField()
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("account", "prompt_type"), True),)


class AITaskLog(BaseModel):
    task_id = CharField(max_length=64, unique=True)
    account = ForeignKeyField(Account, backref="task_logs", on_delete="CASCADE")
    function_name = CharField(max_length=100)
    state = CharField(max_length=20, default="queued")  # queued|running|done|failed|canceled
    phase = CharField(max_length=20, default="INIT")
    message = TextField(default="")
    payload = JSONField(default=dict)
    item_ids = JSONField(default=list)
    step_logs = JSONField(default=list)
    totals = JSONField(default=dict)
    cost = DecimalField(max_digits=12, decimal_places=6, default=0, auto_round=True)
    error = TextField(null=True)
    created_at = DateTimeField(default=utcnow)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("account", "created_at"), False),)


ALL_MODELS = [
    Account,
    User,
    ApiToken,
    Content,
    Images,
    ImageBlob,
    IntegrationSettings,
    ModelNotice,
    AIPrompt,
    AITaskLog,
]

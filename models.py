"""The database: peewee models shared by the web app and the worker.

Every row that belongs to a customer carries its `account`; the named queries below take the
account so that a caller cannot forget the scope.
"""

import datetime as dt
import json

from peewee import (
    BlobField,
    BooleanField,
    Case,
    CharField,
    DatabaseProxy,
    DateField,
    DateTimeField,
    DecimalField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
    fn,
)
from playhouse.db_url import connect

db = DatabaseProxy()

IMAGE_TYPES = ("featured", "in_article", "desktop", "mobile")
IMAGE_STATUSES = ("pending", "queued", "generating", "generated", "failed")
TERMINAL_STATUSES = ("generated", "failed")
# How one attempt at an image ended: stored, failed, canceled before its call, or cut short by a worker
# that died (its image then ran again as a new attempt).
ATTEMPT_OUTCOMES = ("generated", "failed", "canceled", "interrupted")
PROMPT_TYPES = ("image_prompt_template", "negative_prompt")
# staff: articles, prompts, generate; manager: also the account's settings (provider, key, base URL).
ROLES = ("staff", "manager")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def open_database(url: str):
    """Bind the models to the database at `url` (sqlite:///..., postgresql://...)."""
    options = {}
    if url.startswith("sqlite"):
        # WAL lets the web app read while a worker writes; the timeout waits out short write locks. In
        # WAL mode, synchronous=NORMAL syncs at checkpoints instead of at every commit: a commit survives
        # any process being killed, and only an OS crash or power cut can lose the last ones (SQLite is
        # the embedded default; a deployment's database is PostgreSQL).
        options = {"pragmas": {"journal_mode": "wal", "synchronous": "normal", "foreign_keys": 1,
                               "busy_timeout": 10000}}
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
    body = TextField(default="")  # HTML, sanitized before it is stored (Markdown is converted first)
    slug = CharField(max_length=200, default="")  # from the title: the first part of its images' file names
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
    # Where the provider's answer waits (storage's staging area) between the call and the SAVE job: a
    # paid answer survives a killed worker or a lost Redis, and the SAVE job can run again from it.
    answer_key = CharField(max_length=300, null=True)
    attempts = IntegerField(default=0)
    # Publishing: alt text (a default from the prompt until a person edits it), title, caption, and the
    # SEO file name `<article-slug>-<slot>.<ext>`, unique per account.
    alt_text = CharField(max_length=125, default="")
    alt_text_edited = BooleanField(default=False)
    title = CharField(max_length=200, default="")
    caption = TextField(null=True)
    file_name = CharField(max_length=255, null=True)
    # The prompt the stored image was made from: a prompt edited since makes the image out of date.
    generated_prompt = TextField(null=True)
    public_key = CharField(max_length=64, null=True)  # its current login-free URL (PublicImage)
    generation_started_at = DateTimeField(null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = (
            (("account", "content", "image_type", "position"), False),  # the Images page
            (("account", "status"), False),  # status filter
            (("status", "updated_at"), False),  # the stale-claim sweep
            (("task_id",), False),  # task progress and job claims
            (("account", "file_name"), True),  # SEO file names are unique per account
        )

    @property
    def out_of_date(self) -> bool:
        return self.status == "generated" and self.generated_prompt is not None and self.prompt != self.generated_prompt

    @classmethod
    def for_account(cls, account_id):
        return cls.select().where(cls.account == account_id)

    # --- the one state machine of an image -----------------------------------------------------
    #
    #   pending ─claim─▶ queued ─begin─▶ generating ─store─▶ generated
    #                      │                 │   (answered: cost, request id and answer_key recorded
    #                      └──────fail───────┴─▶ failed        on the row before anything else)
    #   failed, and with regenerate generated, ─claim─▶ queued (a new task: its charges start afresh)
    #   queued, or generating before its call ─release_unstarted─▶ pending (its task was canceled)
    #
    # Each begin opens an ImageAttempt, which records the call's estimate, the charge and the end: the
    # ledger that budgets and usage read.
    #
    # Every write below names the account and the task that holds the image, so a job of an older task
    # (or a forged one naming another account's image) can never change it.

    RUN_ORDER = {"featured": 0, "in_article": 1, "desktop": 2, "mobile": 3}

    @classmethod
    def type_rank(cls):
        """Featured first, then in-article, desktop, mobile (as SQL, for ORDER BY)."""
        return Case(cls.image_type, list(cls.RUN_ORDER.items()), 9)

    @classmethod
    def in_run_order(cls, query):
        """The order images are generated in: featured first, then by article and position."""
        return query.order_by(cls.type_rank(), cls.content, cls.position, cls.id)

    @classmethod
    def claim(cls, account_id, ids, task_id: str, *, regenerate: bool) -> list[int]:
        """Take those images for a task in one conditional update (a second request for the same images
        finds them queued and takes none); the ids taken, in run order."""
        allowed = ["pending", "failed"] + (["generated"] if regenerate else [])
        (cls.update(status="queued", task_id=task_id, error=None, attempts=0, cost=None, provider_request_id=None,
                    charge_uncertain=False, answer_key=None, updated_at=utcnow())
         .where((cls.account == account_id) & cls.id.in_(ids) & cls.status.in_(allowed))
         .execute())
        taken = cls.select(cls.id).where((cls.task_id == task_id) & (cls.status == "queued"))
        return [row.id for row in cls.in_run_order(taken)]

    @classmethod
    def begin(cls, account_id, image_id, task_id: str) -> bool:
        """queued → generating (a retry of a failed or interrupted one too), opening a new attempt; False
        when the image is done or another task holds it, so a requeued job makes no call."""
        now = utcnow()
        with db.atomic():
            began = (cls.update(status="generating", attempts=cls.attempts + 1, generation_started_at=now, error=None,
                                answer_key=None, provider_url=None, updated_at=now)
                     .where((cls.account == account_id) & (cls.id == image_id) & (cls.task_id == task_id)
                            & cls.status.in_(["queued", "failed", "generating"]))
                     .execute()) == 1
            if began:
                ImageAttempt.open(account_id, image_id, task_id, now)
        return began

    @classmethod
    def calling(cls, account_id, image_id, task_id: str, *, provider, model, estimate) -> None:
        """Its provider call starts now, estimated at `estimate` (what the budget holds for it until the
        provider says what it charged)."""
        ImageAttempt.update_latest(image_id, task_id, provider=provider, model=model, estimate=estimate,
                                   called_at=utcnow())

    @classmethod
    def answered(cls, account_id, image_id, task_id: str, *, cost, request_id, provider_url=None) -> None:
        """The provider answered, so it has billed: what it cost, its request id and where the answer
        waits. A re-run of the image adds its own charge; the attempt keeps its own."""
        now = utcnow()
        with db.atomic():
            (cls.update(cost=fn.COALESCE(cls.cost, 0) + cost if cost is not None else cls.cost,
                        provider_request_id=request_id, charge_uncertain=False, provider_url=provider_url,
                        updated_at=now)
             .where((cls.account == account_id) & (cls.id == image_id) & (cls.task_id == task_id))
             .execute())
            ImageAttempt.update_latest(image_id, task_id, cost=cost if cost is not None else 0, request_id=request_id,
                                       charged_at=now)

    @classmethod
    def answer_staged(cls, account_id, image_id, task_id: str, key: str) -> None:
        (cls.update(answer_key=key)
         .where((cls.account == account_id) & (cls.id == image_id) & (cls.task_id == task_id)).execute())

    @classmethod
    def stored(cls, account_id, image_id, task_id: str, **fields) -> bool:
        """generating (or failed after its answer arrived) → generated, with the stored file's fields."""
        with db.atomic():
            done = (cls.update(status="generated", error=None, answer_key=None, updated_at=utcnow(), **fields)
                    .where((cls.account == account_id) & (cls.id == image_id) & (cls.task_id == task_id)
                           & cls.status.in_(["generating", "failed"]))
                    .execute()) == 1
            if done:
                ImageAttempt.update_latest(image_id, task_id, outcome="generated", error=None, ended_at=utcnow())
        return done

    @classmethod
    def fail(cls, account_id, image_id, task_id: str, reason: str, *, request_id=None, charge_uncertain=False) -> bool:
        """queued or generating → failed, with the sentence staff read (and the provider's request id and
        whether the call may have been billed, when known)."""
        details = {"provider_request_id": request_id} if request_id else {}
        if charge_uncertain:
            details["charge_uncertain"] = True
        with db.atomic():
            failed = (cls.update(status="failed", error=reason[:2000], updated_at=utcnow(), **details)
                      .where((cls.account == account_id) & (cls.id == image_id) & (cls.task_id == task_id)
                             & cls.status.in_(["queued", "generating"]))
                      .execute()) == 1
            if failed:
                ImageAttempt.close(account_id, image_id, task_id, "failed", reason[:2000])
        return failed

    @classmethod
    def release_unstarted(cls, account_id, task_id: str, ids=None) -> list[int]:
        """A canceled task lets go of its images whose provider call has not started: queued, or generating
        with no call made yet → pending again, "canceled" in their attempts (not an error). The ids let go."""
        called = (ImageAttempt.select(ImageAttempt.image_id)
                  .where((ImageAttempt.task_id == task_id) & ImageAttempt.outcome.is_null()
                         & ImageAttempt.called_at.is_null(False)))
        scope = (cls.account == account_id) & (cls.task_id == task_id)
        if ids is not None:
            scope &= cls.id.in_(list(ids))
        unstarted = scope & ((cls.status == "queued") | ((cls.status == "generating") & cls.id.not_in(called)))
        with db.atomic():
            released = [row.id for row in cls.select(cls.id).where(unstarted)]
            if released:
                (cls.update(status="pending", answer_key=None, updated_at=utcnow())
                 .where(scope & cls.id.in_(released) & cls.status.in_(["queued", "generating"])).execute())
                for image_id in released:
                    ImageAttempt.close(account_id, image_id, task_id, "canceled", None)
        return released


class ImageAttempt(BaseModel):
    """One try at one image in one task: when it started, what its call was estimated at and what the
    provider charged, and how it ended. The spend ledger (budgets, usage) and a run's per-image history:
    it outlives the image's own row, which a regeneration resets, and RQ's results, which expire."""

    account = ForeignKeyField(Account, backref="image_attempts", on_delete="CASCADE")
    task_id = CharField(max_length=64)
    image_id = IntegerField()  # not a foreign key: spend stays recorded when an image is deleted
    provider = CharField(max_length=40, null=True)
    model = CharField(max_length=100, null=True)
    estimate = DecimalField(max_digits=12, decimal_places=6, null=True, auto_round=True)
    cost = DecimalField(max_digits=12, decimal_places=6, null=True, auto_round=True)
    request_id = CharField(max_length=200, null=True)
    outcome = CharField(max_length=20, null=True, choices=[(o, o) for o in ATTEMPT_OUTCOMES])
    error = TextField(null=True)
    started_at = DateTimeField(default=utcnow)
    called_at = DateTimeField(null=True)
    charged_at = DateTimeField(null=True)
    ended_at = DateTimeField(null=True)

    class Meta:
        indexes = (
            (("account", "charged_at"), False),  # spend this month, usage
            (("account", "outcome"), False),  # calls in flight (budgets)
            (("task_id", "image_id"), False),  # a run's images
        )

    @classmethod
    def open(cls, account_id, image_id, task_id: str, now) -> None:
        # An attempt still open belonged to a job that died before it could end it.
        (cls.update(outcome="interrupted", ended_at=now)
         .where((cls.task_id == task_id) & (cls.image_id == image_id) & cls.outcome.is_null()).execute())
        cls.create(account=account_id, task_id=task_id, image_id=image_id, started_at=now)

    @classmethod
    def update_latest(cls, image_id, task_id: str, **fields) -> int:
        latest = (cls.select(fn.MAX(cls.id)).where((cls.task_id == task_id) & (cls.image_id == image_id)))
        return cls.update(**fields).where(cls.id == latest).execute()

    @classmethod
    def close(cls, account_id, image_id, task_id: str, outcome: str, error) -> None:
        """End the open attempt; an image that ends before any attempt began (failed or canceled while
        queued) gets one, so every end is recorded."""
        now = utcnow()
        closed = (cls.update(outcome=outcome, error=error, ended_at=now)
                  .where((cls.task_id == task_id) & (cls.image_id == image_id) & cls.outcome.is_null()).execute())
        if not closed:
            cls.create(account=account_id, task_id=task_id, image_id=image_id, outcome=outcome, error=error,
                       started_at=now, ended_at=now)


class PublicImage(BaseModel):
    """A login-free, unguessable URL of one stored image (`/p/<key>.<ext>`), for publishing. A regenerated
    image gets a new one; the old one keeps answering until `expires_at`, then it and its file go."""

    key = CharField(max_length=64, unique=True)
    account = ForeignKeyField(Account, backref="public_images", on_delete="CASCADE")
    image_id = IntegerField()
    file_path = CharField(max_length=500)
    content_type = CharField(max_length=50)
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(null=True)  # None: the image's current URL

    class Meta:
        indexes = ((("account", "image_id"), False), (("expires_at",), False))


class WebhookDelivery(BaseModel):
    """One attempt to tell an account's webhook that a task ended (admins see each one)."""

    account = ForeignKeyField(Account, backref="webhook_deliveries", on_delete="CASCADE")
    task_id = CharField(max_length=64)
    event_id = CharField(max_length=64)
    url = TextField()
    attempt = IntegerField(default=1)
    status_code = IntegerField(null=True)
    error = TextField(null=True)
    delivered = BooleanField(default=False)
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("account", "created_at"), False), (("event_id",), False))


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
    webhook_secret_encrypted = TextField(null=True)  # Fernet ciphertext; shown once, when it is set
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
    created_by = ForeignKeyField(User, null=True, on_delete="SET NULL")  # None: started from the CLI
    created_at = DateTimeField(default=utcnow)
    started_at = DateTimeField(null=True)
    # Set by a cancel: no new provider call starts for the task; it is `canceled` once its calls in
    # flight have ended.
    canceled_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("account", "created_at"), False),)


ALL_MODELS = [
    Account,
    User,
    ApiToken,
    Content,
    Images,
    ImageAttempt,
    PublicImage,
    WebhookDelivery,
    ImageBlob,
    IntegrationSettings,
    ModelNotice,
    AIPrompt,
    AITaskLog,
]

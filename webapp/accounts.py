"""Accounts, users and API tokens: the only place that hashes passwords and tokens."""

import hashlib
import secrets

from werkzeug.security import check_password_hash, generate_password_hash

from models import ROLES, Account, ApiToken, User, db, utcnow

# Checked against for an unknown email, so a login takes the same time whether the email exists or not.
_UNKNOWN_USER_HASH = generate_password_hash(secrets.token_hex(16))


def hash_token(token: str) -> str:
    # Tokens are long random strings, so a fast hash is enough (unlike passwords).
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(email: str, password: str, *, account_name: str, is_admin: bool = False,
                role: str | None = None) -> User:
    """Create a user (and its account when it does not exist yet). Without a role, the first user of a
    new account is its manager (someone must be able to set it up) and later users are staff."""
    email = email.strip().lower()
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    with db.atomic():
        account, created = Account.get_or_create(name=account_name)
        return User.create(
            account=account,
            email=email,
            password_hash=generate_password_hash(password),
            is_admin=is_admin,
            role=role or ("manager" if created else "staff"),
        )


def authenticate(email: str, password: str) -> User | None:
    user = User.get_or_none(User.email == (email or "").strip().lower())
    # One hash check whether the email exists or not, so timing does not tell which emails exist.
    matches = check_password_hash(user.password_hash if user else _UNKNOWN_USER_HASH, password or "")
    return user if user and matches else None


def create_token(user: User, name: str = "cli", *, expires_at=None) -> str:
    """Make a bearer token; only its hash is stored, so it can be shown just once."""
    token = secrets.token_urlsafe(32)
    ApiToken.create(user=user, token_hash=hash_token(token), name=name, expires_at=expires_at)
    return token


def tokens_of(user: User) -> list[ApiToken]:
    return list(ApiToken.select().where(ApiToken.user == user).order_by(ApiToken.created_at, ApiToken.id))


def revoke_token(token_id: int, *, account_id: int | None = None) -> bool:
    """Delete a token (within `account_id` when given); True when one was revoked."""
    query = ApiToken.delete().where(ApiToken.id == token_id)
    if account_id is not None:
        query = query.where(ApiToken.user.in_(User.select(User.id).where(User.account == account_id)))
    return query.execute() == 1


def delete_user(user: User) -> None:
    """Remove a user, its tokens and so every way it had in; an account keeps at least one manager."""
    if user.is_manager and not User.select().where((User.account == user.account_id) & (User.role == "manager")
                                                   & (User.id != user.id)).exists():
        raise ValueError(f"{user.email} is the account's last manager; make another user a manager first.")
    user.delete_instance(recursive=True)


def user_for_token(token: str) -> User | None:
    row = (
        ApiToken.select(ApiToken, User)
        .join(User)
        .where(ApiToken.token_hash == hash_token(token))
        .first()
    )
    if row is None or (row.expires_at is not None and row.expires_at <= utcnow()):
        return None
    ApiToken.update(last_used_at=utcnow()).where(ApiToken.id == row.id).execute()
    return row.user

"""Users, roles and what each role may see ("分权分域": data split by level and by area).

Tokens are 256-bit random secrets shown once and stored as SHA-256 digests: a fast hash is enough for a
secret of that entropy (passwords, which people choose, will need a slow KDF when sign-in by password lands).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from brain.backend import Backend, write_conflict
from brain.errors import BrainError, NotAuthenticated, Throttled


@dataclass(frozen=True)
class Role:
    """What a role sees: its unit's level, whether personal fields, whether individual features."""

    name: str
    level: str
    personal: bool
    individual: bool
    label: str
    min_count: int = 0  # the rounding base of its counts of people and events (brain.scope.Disclosure)


ROLES: dict[str, Role] = {r.name: r for r in (
    Role("district_analyst", "district", personal=True, individual=True, label="区数据分析员 district analyst"),
    Role("street_staff", "street", personal=False, individual=True, label="街道工作人员 street staff"),
    Role("community_staff", "community", personal=True, individual=True, label="社区工作人员 community staff"),
    Role("grid_worker", "grid", personal=True, individual=True, label="网格员 grid worker"),
    Role("portal", "district", personal=False, individual=False, min_count=5, label="门户 other portals"),
)}

USERS_DDL = """CREATE TABLE IF NOT EXISTS users (
    name VARCHAR PRIMARY KEY,
    role VARCHAR NOT NULL,
    unit_code VARCHAR NOT NULL,
    token_hash VARCHAR NOT NULL,
    created_at TIMESTAMP,
    disabled BOOLEAN DEFAULT false,
    password_hash VARCHAR,
    uid VARCHAR
)"""
#: How stale a session's last_seen may get before a request writes it again (idle expiry is counted in minutes).
SESSION_TOUCH = timedelta(seconds=30)

#: A dashboard session belongs to one user id with one role and unit: removing the user, re-adding the name, or
#: changing the role or unit ends it. `user_name` is kept for people reading the table.
SESSIONS_DDL = """CREATE TABLE IF NOT EXISTS sessions (
    id_hash VARCHAR PRIMARY KEY,
    user_name VARCHAR NOT NULL,
    created_at TIMESTAMP,
    user_uid VARCHAR,
    role VARCHAR,
    unit_code VARCHAR,
    last_seen TIMESTAMP
)"""
#: Every sign-in attempt, for throttling (the audit log has them too, with their outcome).
SIGNINS_DDL = """CREATE TABLE IF NOT EXISTS signin_attempts (
    ts TIMESTAMP NOT NULL,
    name VARCHAR,
    address VARCHAR,
    ok BOOLEAN NOT NULL
)"""


class AuthError(BrainError):
    """A user cannot be created or authenticated."""


@dataclass(frozen=True)
class User:
    """A signed-in user: name, role and the admin unit they are bound to; `uid` tells apart users of one name."""

    name: str
    role: Role
    unit_code: str
    unit_level: str
    uid: str = ""


def auth_tables(db: Backend) -> None:
    """Create (or bring up to date) the users, sessions and sign-in tables, once per connection."""
    if getattr(db, "_auth_tables", False):
        return
    db.execute(USERS_DDL)
    db.execute("ALTER TABLE users ADD COLUMN IF NOT EXISTS uid VARCHAR")
    db.execute("UPDATE users SET uid = md5(name || CAST(random() AS VARCHAR)) WHERE uid IS NULL")
    db.execute(SESSIONS_DDL)
    for col, typ in (("user_uid", "VARCHAR"), ("role", "VARCHAR"), ("unit_code", "VARCHAR"), ("last_seen", "TIMESTAMP")):
        db.execute(f"ALTER TABLE sessions ADD COLUMN IF NOT EXISTS {col} {typ}")
    db.execute(SIGNINS_DDL)
    db._auth_tables = True


def hash_token(token: str) -> str:
    """The digest stored for a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def add_user(db: Backend, name: str, role: str, unit_code: str) -> str:
    """Create a user bound to a unit of its role's level; return the new token (shown once, stored hashed)."""
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    if not name.strip():
        raise AuthError("a user needs a name")
    auth_tables(db)
    want = ROLES[role].level
    unit = db.query("SELECT level FROM admin_units WHERE code = ?", [unit_code])
    if not unit:
        raise AuthError(f"no admin unit {unit_code!r}: ingest the admin units first, or check the code")
    if unit[0][0] != want:
        raise AuthError(f"role {role} is bound to a {want}, but {unit_code} is a {unit[0][0]}")
    if db.query("SELECT 1 FROM users WHERE name = ?", [name]):
        raise AuthError(f"user {name!r} exists: remove it first or pick another name")
    token = secrets.token_urlsafe(32)
    db.execute("INSERT INTO users (name, role, unit_code, token_hash, created_at, disabled, password_hash, uid) "
               "VALUES (?, ?, ?, ?, ?, false, NULL, ?)",
               [name, role, unit_code, hash_token(token), datetime.now(), secrets.token_hex(12)])
    return token


def rotate_token(db: Backend, name: str) -> str:
    """Give a user a new token (the old one stops working) and end their dashboard sessions; return the token."""
    auth_tables(db)
    rows = db.query("SELECT uid FROM users WHERE name = ?", [name])
    if not rows:
        raise AuthError(f"no user {name!r}")
    token = secrets.token_urlsafe(32)
    with db.transaction():
        db.execute("UPDATE users SET token_hash = ? WHERE name = ?", [hash_token(token), name])
        db.execute("DELETE FROM sessions WHERE user_uid = ?", [rows[0][0]])
    return token


def _scrypt(password: str, salt: bytes) -> str:
    # scrypt (memory-hard, in the standard library): people choose passwords, so a fast hash is not enough
    return hashlib.scrypt(password.encode(errors="replace"), salt=salt, n=2**14, r=8, p=1).hex()


#: Hashed for names without a password, so that an unknown name takes as long to refuse as a wrong password.
_DUMMY_SALT = secrets.token_bytes(16)


def set_password(db: Backend, name: str, password: str) -> None:
    """Let a user also sign in to the dashboards by name and password (stored as salted scrypt)."""
    if len(password) < 8:
        raise AuthError("a password needs at least 8 characters")
    auth_tables(db)
    if not db.query("SELECT 1 FROM users WHERE name = ?", [name]):
        raise AuthError(f"no user {name!r}: create it with `brain users add` first")
    salt = secrets.token_bytes(16)
    db.execute("UPDATE users SET password_hash = ? WHERE name = ?", [salt.hex() + "$" + _scrypt(password, salt), name])


def check_password(db: Backend, name: str, password: str) -> bool:
    """Whether `password` is the user's (constant-time; the same time for unknown names and users without one)."""
    auth_tables(db)
    rows = [] if "\x00" in name else db.query(  # no name holds NUL, and PostgreSQL cannot bind one
        "SELECT password_hash FROM users WHERE name = ? AND NOT disabled", [name])
    if not rows or not rows[0][0]:
        _scrypt(password, _DUMMY_SALT)
        return False
    salt, digest = rows[0][0].split("$", 1)
    return secrets.compare_digest(digest, _scrypt(password, bytes.fromhex(salt)))


_USER_SELECT = """SELECT u.name, u.role, u.unit_code, a.level, u.uid FROM users u
                  JOIN admin_units a ON a.code = u.unit_code WHERE NOT u.disabled AND """


def _user(rows: list[tuple]) -> User | None:
    if not rows:
        return None
    name, role, unit, level, uid = rows[0]
    return User(name, ROLES[role], unit, level, uid)


def user_by_name(db: Backend, name: str) -> User | None:
    """The user of a name (after a password check), or None."""
    auth_tables(db)
    return _user(db.query(_USER_SELECT + "u.name = ?", [name]))


@dataclass(frozen=True)
class SignInPolicy:
    """How many failed sign-ins a name and an address may have within the window before they wait."""

    per_name: int = 5
    per_address: int = 20
    window: timedelta = timedelta(minutes=15)

    @classmethod
    def from_settings(cls, settings) -> "SignInPolicy":
        """The policy configured for the service (BRAIN_SIGNIN_*)."""
        return cls(settings.signin_failures_per_name, settings.signin_failures_per_address,
                   timedelta(minutes=settings.signin_window_minutes))


def sign_in(db: Backend, name: str, password: str, address: str | None, policy: SignInPolicy,
            now: datetime | None = None) -> User:
    """The user of a name and password, after the throttle; every attempt is recorded.

    Raises Throttled while the name or the address has had `policy` failures within the window (the password is
    not even checked then), NotAuthenticated for a wrong name or password (the same message and time for both).
    """
    auth_tables(db)
    now = now or datetime.now()
    name = name.replace("\x00", "")
    since = now - policy.window
    for column, value, limit, what in (("name", name, policy.per_name, f"the name {name!r}"),
                                       ("address", address, policy.per_address, "your address")):
        if value is None:
            continue
        rows = db.query(f"SELECT count(*), min(ts) FROM signin_attempts WHERE {column} = ? AND NOT ok AND ts > ?",
                        [value, since])
        if rows[0][0] >= limit:
            wait = max(1, int((rows[0][1] + policy.window - now).total_seconds() // 60) + 1)
            db.execute("INSERT INTO signin_attempts VALUES (?, ?, ?, false)", [now, name, address])
            exc = Throttled(f"too many failed sign-ins for {what}: try again in {wait} minute{'s' * (wait > 1)}, "
                            "or ask an administrator to set a new password (`brain users passwd`)")
            exc.minutes = wait
            raise exc
    ok = bool(name) and check_password(db, name, password)
    user = user_by_name(db, name) if ok else None
    db.execute("INSERT INTO signin_attempts VALUES (?, ?, ?, ?)", [now, name, address, user is not None])
    # the throttle needs one window; audit_log keeps every attempt for good
    db.execute("DELETE FROM signin_attempts WHERE ts < ?", [now - max(policy.window, timedelta(days=1))])
    if user is None:
        raise NotAuthenticated("unknown name or wrong password")
    return user


def create_session(db: Backend, user: User) -> str:
    """A new dashboard session of a signed-in user; returns the secret for the cookie (stored hashed)."""
    auth_tables(db)
    sid = secrets.token_urlsafe(32)
    now = datetime.now()
    db.execute("INSERT INTO sessions (id_hash, user_name, created_at, user_uid, role, unit_code, last_seen) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)", [hash_token(sid), user.name, now, user.uid, user.role.name,
                                                user.unit_code, now])
    return sid


def session_user(db: Backend, sid: str | None, idle: timedelta = timedelta(hours=1),
                 lifetime: timedelta = timedelta(hours=12)) -> User | None:
    """The user of a session cookie, or None: unknown, idle longer than `idle`, older than `lifetime`, or its
    user removed, disabled, re-created, or given another role or unit since it began (then it is deleted)."""
    if not sid or "\x00" in sid:
        return None
    auth_tables(db)
    key = hash_token(sid)
    rows = db.query("SELECT user_uid, role, unit_code, created_at, coalesce(last_seen, created_at) FROM sessions "
                    "WHERE id_hash = ?", [key])
    if not rows:
        return None
    uid, role, unit, created, seen = rows[0]
    now = datetime.now()
    user = _user(db.query(_USER_SELECT + "u.uid = ? AND u.role = ? AND u.unit_code = ?", [uid, role, unit])) \
        if uid and created and now - created < lifetime and now - seen < idle else None
    if user is None:
        db.execute("DELETE FROM sessions WHERE id_hash = ?", [key])
        return None
    if now - seen >= min(SESSION_TOUCH, idle / 4):  # one write per session and half-minute, not one per tile
        try:
            db.execute("UPDATE sessions SET last_seen = ? WHERE id_hash = ?", [now, key])
        except Exception as exc:
            # the map's parallel requests of one session touch it at the same moment: one write wins, and
            # the others only repeat it (a conflict here used to answer 500)
            if not write_conflict(exc):
                raise
    return user


def end_session(db: Backend, sid: str | None) -> None:
    """Sign out: the session cookie stops working."""
    if sid and "\x00" not in sid:
        auth_tables(db)
        db.execute("DELETE FROM sessions WHERE id_hash = ?", [hash_token(sid)])


def authenticate(db: Backend, token: str | None) -> User | None:
    """The user holding `token`, or None (unknown, empty or disabled)."""
    if not token:
        return None
    auth_tables(db)
    return _user(db.query(_USER_SELECT + "u.token_hash = ?", [hash_token(token)]))


def list_users(db: Backend) -> list[tuple]:
    """(name, role, unit_code, created_at, disabled) of every user."""
    auth_tables(db)
    return db.query("SELECT name, role, unit_code, created_at, disabled FROM users ORDER BY name")


def remove_user(db: Backend, name: str) -> None:
    """Delete a user: their token and dashboard sessions stop working at once, and their saved page goes."""
    auth_tables(db)
    rows = db.query("SELECT uid FROM users WHERE name = ?", [name])
    if not rows:
        raise AuthError(f"no user {name!r}")
    with db.transaction():
        db.execute("DELETE FROM sessions WHERE user_uid = ? OR (user_uid IS NULL AND user_name = ?)", [rows[0][0], name])
        if db.query("SELECT 1 FROM information_schema.tables WHERE table_name = 'user_layouts'"):
            db.execute("DELETE FROM user_layouts WHERE user_name = ?", [name])
        db.execute("DELETE FROM users WHERE name = ?", [name])

"""Users, roles and what each role may see ("分权分域": data split by level and by area).

Tokens are 256-bit random secrets shown once and stored as SHA-256 digests: a fast hash is enough for a
secret of that entropy (passwords, which people choose, will need a slow KDF when sign-in by password lands).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from brain.backend import Backend
from brain.errors import BrainError


@dataclass(frozen=True)
class Role:
    """What a role sees: its unit's level, whether personal fields, whether individual features."""

    name: str
    level: str
    personal: bool
    individual: bool
    label: str
    min_count: int = 0  # aggregates below this are suppressed (portal: small counts identify people)


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
    password_hash VARCHAR
)"""


class AuthError(BrainError):
    """A user cannot be created or authenticated."""


@dataclass(frozen=True)
class User:
    """A signed-in user: name, role and the admin unit they are bound to."""

    name: str
    role: Role
    unit_code: str
    unit_level: str


def hash_token(token: str) -> str:
    """The digest stored for a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def add_user(db: Backend, name: str, role: str, unit_code: str) -> str:
    """Create a user bound to a unit of its role's level; return the new token (shown once, stored hashed)."""
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    if not name.strip():
        raise AuthError("a user needs a name")
    db.execute(USERS_DDL)
    want = ROLES[role].level
    unit = db.query("SELECT level FROM admin_units WHERE code = ?", [unit_code])
    if not unit:
        raise AuthError(f"no admin unit {unit_code!r}: ingest the admin units first, or check the code")
    if unit[0][0] != want:
        raise AuthError(f"role {role} is bound to a {want}, but {unit_code} is a {unit[0][0]}")
    if db.query("SELECT 1 FROM users WHERE name = ?", [name]):
        raise AuthError(f"user {name!r} exists: remove it first or pick another name")
    token = secrets.token_urlsafe(32)
    db.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?, false, NULL)",
               [name, role, unit_code, hash_token(token), datetime.now()])
    return token


def _scrypt(password: str, salt: bytes) -> str:
    # scrypt (memory-hard, in the standard library): people choose passwords, so a fast hash is not enough
    return hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1).hex()


def set_password(db: Backend, name: str, password: str) -> None:
    """Let a user also sign in to the dashboards by name and password (stored as salted scrypt)."""
    if len(password) < 8:
        raise AuthError("a password needs at least 8 characters")
    db.execute(USERS_DDL)
    if not db.query("SELECT 1 FROM users WHERE name = ?", [name]):
        raise AuthError(f"no user {name!r}: create it with `brain users add` first")
    salt = secrets.token_bytes(16)
    db.execute("UPDATE users SET password_hash = ? WHERE name = ?", [salt.hex() + "$" + _scrypt(password, salt), name])


def check_password(db: Backend, name: str, password: str) -> bool:
    """Whether `password` is the user's (constant-time comparison; False for users without one)."""
    if "\x00" in name:  # no name holds one, and PostgreSQL cannot bind one
        return False
    db.execute(USERS_DDL)
    rows = db.query("SELECT password_hash FROM users WHERE name = ? AND NOT disabled", [name])
    if not rows or not rows[0][0]:
        return False
    salt, digest = rows[0][0].split("$", 1)
    return secrets.compare_digest(digest, _scrypt(password, bytes.fromhex(salt)))


def user_by_name(db: Backend, name: str) -> User | None:
    """The user of a name (after a password check), or None."""
    rows = db.query("""SELECT u.name, u.role, u.unit_code, a.level FROM users u
                       JOIN admin_units a ON a.code = u.unit_code WHERE u.name = ? AND NOT u.disabled""", [name])
    if not rows:
        return None
    name, role, unit, level = rows[0]
    return User(name, ROLES[role], unit, level)


SESSIONS_DDL = """CREATE TABLE IF NOT EXISTS sessions (
    id_hash VARCHAR PRIMARY KEY,
    user_name VARCHAR NOT NULL,
    created_at TIMESTAMP
)"""


def create_session(db: Backend, user: User) -> str:
    """A new dashboard session of a signed-in user; returns the secret for the cookie (stored hashed)."""
    db.execute(SESSIONS_DDL)
    sid = secrets.token_urlsafe(32)
    db.execute("INSERT INTO sessions VALUES (?, ?, ?)", [hash_token(sid), user.name, datetime.now()])
    return sid


def session_user(db: Backend, sid: str | None) -> User | None:
    """The user of a session cookie, or None."""
    if not sid:
        return None
    db.execute(SESSIONS_DDL)
    rows = db.query("SELECT user_name FROM sessions WHERE id_hash = ?", [hash_token(sid)])
    return user_by_name(db, rows[0][0]) if rows else None


def end_session(db: Backend, sid: str | None) -> None:
    """Sign out: the session cookie stops working."""
    if sid:
        db.execute(SESSIONS_DDL)
        db.execute("DELETE FROM sessions WHERE id_hash = ?", [hash_token(sid)])


def authenticate(db: Backend, token: str | None) -> User | None:
    """The user holding `token`, or None (unknown, empty or disabled)."""
    if not token:
        return None
    db.execute(USERS_DDL)
    rows = db.query("""SELECT u.name, u.role, u.unit_code, a.level FROM users u
                       JOIN admin_units a ON a.code = u.unit_code
                       WHERE u.token_hash = ? AND NOT u.disabled""", [hash_token(token)])
    if not rows:
        return None
    name, role, unit, level = rows[0]
    return User(name, ROLES[role], unit, level)


def list_users(db: Backend) -> list[tuple]:
    """(name, role, unit_code, created_at, disabled) of every user."""
    db.execute(USERS_DDL)
    return db.query("SELECT name, role, unit_code, created_at, disabled FROM users ORDER BY name")


def remove_user(db: Backend, name: str) -> None:
    """Delete a user (their tokens stop working at once)."""
    db.execute(USERS_DDL)
    if not db.query("SELECT 1 FROM users WHERE name = ?", [name]):
        raise AuthError(f"no user {name!r}")
    db.execute("DELETE FROM users WHERE name = ?", [name])


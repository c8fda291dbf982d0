"""Users, login throttling and token management."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from jobyard.core.errors import Conflict, InvalidInput, NotFound
from jobyard.core.jobs import JobStatus
from jobyard.core.models import ApiToken, Page
from jobyard.core.users import BOOTSTRAP_ADMIN, ROLES, Deactivation, TokenIdentity, User
from jobyard.store.schema import api_tokens, jobs, login_failures, users
from jobyard.store.sql.base import (
    SqlBase,
    Tx,
    check_limit,
    decode_cursor,
    encode_cursor,
    status_in,
    token_from_row,
)
from jobyard.store.sql.tokens import TOKEN_COLUMNS
from jobyard.store.sql.transitions import Pick, lock_jobconfigs, move, promote

#: Jobs that have not been acquired yet: a deactivated user's ones are cancelled.
_NOT_STARTED = (JobStatus.WAITING, JobStatus.SEQUENCED, JobStatus.QUEUED)
_USER_FIELDS = frozenset({"role", "password_hash"})
#: A listing stops at the newest this many (session tokens: one per job ever run).
_TOKENS_LISTED = 1000


def user_from_row(row: Any) -> User:
    """Map a ``users`` row (table order = :class:`User` field order)."""
    return User(*row)


class UsersMixin(SqlBase):
    """Users, login throttling and token management."""

    # -- users ---------------------------------------------------------------------------

    async def user_create(self, *, name: str, role: str, password_hash: str | None) -> User:
        """Create an active user; ``Conflict`` if the name is taken."""
        if role not in ROLES:
            raise InvalidInput(f"role must be admin or user, not {role!r}", {"field": "role"})
        return await self._write(_user_create, name, role, password_hash)

    async def user_get(self, user_id: int) -> User:
        """A user by id, or ``NotFound``."""
        return await self._read(_user_get, user_id)

    async def user_find(self, name: str) -> User | None:
        """A user by name, or None."""
        return await self._read(_user_find, name)

    async def users_list(self, *, cursor: str | None, limit: int) -> Page[User]:
        """Users by id, cursor-paginated."""
        after = decode_cursor(cursor)
        check_limit(limit)
        return await self._read(_users_list, after, limit)

    async def user_update(self, user_id: int, changes: dict[str, Any]) -> User:
        """Change ``role`` and/or ``password_hash``; ``Conflict`` if no admin would remain."""
        unknown = set(changes) - _USER_FIELDS
        if unknown:
            raise InvalidInput(f"cannot change {', '.join(sorted(unknown))} of a user")
        if "role" in changes and changes["role"] not in ROLES:
            raise InvalidInput("role must be admin or user", {"field": "role"})
        return await self._write(_user_update, user_id, changes)

    async def user_deactivate(self, user_id: int, *, actor: str) -> Deactivation:
        """Deactivate: revoke every token of the user and cancel their not-started jobs.

        One transaction. ``Conflict`` when it would leave no active admin.
        """
        return await self._write(_user_deactivate, user_id, actor)

    async def user_activate(self, user_id: int) -> User:
        """Make a user active again (their revoked tokens stay revoked)."""
        return await self._write(_user_set_active, user_id)

    async def users_bootstrap(self, admin_token_hash: str | None) -> User | None:
        """First start: create user ``admin`` if there are no users, link unowned bootstrap
        tokens to them, and store ``admin_token_hash`` (if given) as their ``admin`` token.
        Returns the admin user (None if users exist but none is called ``admin``).
        """
        return await self._write(_users_bootstrap, admin_token_hash)

    # -- login throttling ------------------------------------------------------------------

    async def login_blocked_until(self, keys: list[str]) -> datetime | None:
        """The latest ``blocked_until`` still in the future among ``keys``, or None."""
        return await self._read(_login_blocked_until, keys)

    async def login_failure_record(
        self,
        keys: dict[str, int],
        *,
        base_seconds: float,
        max_seconds: float,
        forget_after_seconds: float,
    ) -> datetime | None:
        """Count one failure for each key (``{key: threshold}``) and return the latest block.

        From the ``threshold``-th failure on, a key is blocked for
        ``base_seconds * 2 ** (failures - threshold)`` (at most ``max_seconds``); a count
        whose last failure is older than ``forget_after_seconds`` starts over.
        """
        return await self._write(
            _login_failure_record, keys, base_seconds, max_seconds, forget_after_seconds
        )

    async def login_failures_reset(self, keys: list[str]) -> None:
        """Forget the failures of ``keys`` (after a successful login)."""
        await self._write(_login_failures_reset, keys)

    # -- tokens ----------------------------------------------------------------------------

    async def token_identity(self, token_hash: str) -> TokenIdentity | None:
        """A token by hash (revoked and expired ones too), its user and its job's status."""
        return await self._read(_token_identity, token_hash)

    async def token_get(self, token_id: int) -> ApiToken:
        """A token by id, or ``NotFound``."""
        return await self._read(_token_get, token_id)

    async def tokens_list(
        self, *, user_id: int | None, kinds: tuple[str, ...] | None
    ) -> list[ApiToken]:
        """Tokens (revoked ones included), newest first (at most 1000); of one user or all,
        of some kinds."""
        return await self._read(_tokens_list, user_id, kinds)

    async def token_revoke(self, token_id: int) -> ApiToken:
        """Revoke a token (idempotent); ``NotFound`` for an unknown id."""
        return await self._write(_token_revoke, token_id)

    async def token_revoke_by_hash(
        self, token_hash: str, *, kind: str | None = None
    ) -> ApiToken | None:
        """Revoke the non-revoked token with this hash (and kind); return it as it was."""
        return await self._write(_token_revoke_by_hash, token_hash, kind)

    async def session_token_create(
        self, *, job_id: int, user_name: str, token_hash: str
    ) -> User | None:
        """Store a job's session token for user ``user_name`` if that user is active.

        Returns the user (None if there is no such user: no token is stored then, nor
        when the user is inactive).
        """
        return await self._write(_session_token_create, job_id, user_name, token_hash)


# -- transaction bodies ------------------------------------------------------------------


def _user_create(tx: Tx, name: str, role: str, password_hash: str | None) -> User:
    stmt = (
        insert(users)
        .values(
            name=name,
            password_hash=password_hash,
            role=role,
            active=True,
            created_at=tx.now,
            updated_at=tx.now,
        )
        .returning(*users.c)
    )
    try:
        return user_from_row(tx.conn.execute(stmt).one())
    except IntegrityError as exc:
        raise Conflict(f"a user named {name!r} already exists", {"name": name}) from exc


def _missing_user(user_id: int) -> NotFound:
    return NotFound(f"user {user_id} does not exist", {"user_id": user_id})


def _user_get(tx: Tx, user_id: int) -> User:
    row = tx.conn.execute(_USER_BY_ID, {"user_id": user_id}).first()
    if row is None:
        raise _missing_user(user_id)
    return user_from_row(row)


_USER_BY_ID = select(users).where(users.c.id == bindparam("user_id"))
_USER_BY_NAME = select(users).where(users.c.name == bindparam("user_name"))


def _user_find(tx: Tx, name: str) -> User | None:
    row = tx.conn.execute(_USER_BY_NAME, {"user_name": name}).first()
    return None if row is None else user_from_row(row)


def _users_list(tx: Tx, after: int | None, limit: int) -> Page[User]:
    stmt = select(users).order_by(users.c.id).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(users.c.id > after)
    items = [user_from_row(row) for row in tx.conn.execute(stmt)]
    if len(items) > limit:
        items = items[:limit]
        return Page(items, encode_cursor(items[-1].id))
    return Page(items, None)


def _other_active_admins(tx: Tx, user_id: int) -> int:
    stmt = (
        select(func.count())
        .select_from(users)
        .where(users.c.role == "admin", users.c.active.is_(True), users.c.id != user_id)
    )
    return int(tx.conn.execute(stmt).scalar_one())


def _user_update(tx: Tx, user_id: int, changes: dict[str, Any]) -> User:
    user = _user_get(tx, user_id)
    if (
        changes.get("role", user.role) != "admin"
        and user.role == "admin"
        and user.active
        and not _other_active_admins(tx, user_id)
    ):
        raise Conflict(f"user {user.name!r} is the last active admin: cannot demote them")
    row = tx.conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(**changes, updated_at=tx.now)
        .returning(*users.c)
    ).one()
    return user_from_row(row)


def _user_deactivate(tx: Tx, user_id: int, actor: str) -> Deactivation:
    user = _user_get(tx, user_id)
    if user.role == "admin" and user.active and not _other_active_admins(tx, user_id):
        raise Conflict(f"user {user.name!r} is the last active admin: cannot deactivate them")
    pending = tx.conn.execute(
        select(jobs.c.id, jobs.c.jobconfig_id).where(
            jobs.c.submitted_by == user.name, status_in(_NOT_STARTED)
        )
    ).all()
    jobconfig_ids = {jc for _, jc in pending if jc is not None}
    lock_jobconfigs(tx, jobconfig_ids)  # PostgreSQL: jobconfigs, then jobs
    reason = f"user {user.name} deactivated"
    cancelled = []
    if pending:
        cancelled = move(
            tx,
            to=JobStatus.CANCELLED,
            pick=Pick.MANY,
            params={"ids": [job_id for job_id, _ in pending]},
            sets={"ended_at": tx.now, "status_reason": reason},
            actor=actor,
            reason=reason,
            order=lambda job: job.id,
        )
    for jobconfig_id in sorted({j.jobconfig_id for j in cancelled if j.jobconfig_id is not None}):
        promote(tx, jobconfig_id)
    revoked = tx.conn.execute(
        update(api_tokens)
        .where(api_tokens.c.user_id == user_id, api_tokens.c.revoked.is_(False))
        .values(revoked=True)
    ).rowcount
    row = tx.conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(active=False, updated_at=tx.now)
        .returning(*users.c)
    ).one()
    return Deactivation(
        user=user_from_row(row),
        tokens_revoked=int(revoked or 0),
        jobs_cancelled=[j.id for j in cancelled],
    )


def _user_set_active(tx: Tx, user_id: int) -> User:
    row = tx.conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(active=True, updated_at=tx.now)
        .returning(*users.c)
    ).first()
    if row is None:
        raise _missing_user(user_id)
    return user_from_row(row)


def _users_bootstrap(tx: Tx, admin_token_hash: str | None) -> User | None:
    admin = _user_find(tx, BOOTSTRAP_ADMIN)
    if admin is None:
        if tx.conn.execute(select(func.count()).select_from(users)).scalar_one():
            return None
        # Replicas starting together on one new database: the first insert wins.
        tx.conn.execute(
            (pg_insert(users) if tx.pg else sqlite_insert(users))
            .values(
                name=BOOTSTRAP_ADMIN,
                password_hash=None,
                role="admin",
                active=True,
                created_at=tx.now,
                updated_at=tx.now,
            )
            .on_conflict_do_nothing(index_elements=[users.c.name])
        )
        admin = _user_find(tx, BOOTSTRAP_ADMIN)
        if admin is None:
            return None
    tx.conn.execute(
        update(api_tokens)
        .where(api_tokens.c.user_id.is_(None), api_tokens.c.kind == "admin")
        .values(user_id=admin.id)
    )
    if admin_token_hash is not None:
        tx.conn.execute(
            insert(api_tokens).values(
                name=BOOTSTRAP_ADMIN,
                token_hash=admin_token_hash,
                role="admin",
                created_at=tx.now,
                revoked=False,
                user_id=admin.id,
                kind="admin",
            )
        )
    return admin


def _login_blocked_until(tx: Tx, keys: list[str]) -> datetime | None:
    value: datetime | None = tx.conn.execute(
        select(login_failures.c.blocked_until)
        .where(login_failures.c.key.in_(keys), login_failures.c.blocked_until > tx.now)
        .order_by(login_failures.c.blocked_until.desc())
        .limit(1)
    ).scalar()
    return value


def _login_failure_record(
    tx: Tx, keys: dict[str, int], base: float, cap: float, forget_after: float
) -> datetime | None:
    latest: datetime | None = None
    rows = {
        r.key: r
        for r in tx.conn.execute(select(login_failures).where(login_failures.c.key.in_(keys)))
    }
    for key, threshold in sorted(keys.items()):
        row = rows.get(key)
        failures = 1
        if row is not None and (tx.now - row.last_failure_at).total_seconds() < forget_after:
            failures = row.failures + 1
        blocked = None
        if failures >= threshold:
            delay = min(cap, base * 2 ** min(failures - threshold, 30))
            blocked = tx.now + timedelta(seconds=delay)
            latest = blocked if latest is None else max(latest, blocked)
        values = {"failures": failures, "last_failure_at": tx.now, "blocked_until": blocked}
        if row is None:
            tx.conn.execute(insert(login_failures).values(key=key, **values))
        else:
            tx.conn.execute(
                update(login_failures).where(login_failures.c.key == key).values(**values)
            )
    return latest


def _login_failures_reset(tx: Tx, keys: list[str]) -> None:
    tx.conn.execute(login_failures.delete().where(login_failures.c.key.in_(keys)))


def _token_identity(tx: Tx, token_hash: str) -> TokenIdentity | None:
    row = tx.conn.execute(
        select(*TOKEN_COLUMNS).where(api_tokens.c.token_hash == token_hash)
    ).first()
    if row is None:
        return None
    token = token_from_row(row)
    user = None
    if token.user_id is not None:
        found = tx.conn.execute(select(users).where(users.c.id == token.user_id)).first()
        user = None if found is None else user_from_row(found)
    job_status = None
    definers: list[tuple[str, User | None]] = []
    if token.job_id is not None:
        job = tx.conn.execute(
            select(jobs.c.status, jobs.c.definers).where(jobs.c.id == token.job_id)
        ).first()
        if job is not None:
            job_status = job[0]
            own = None if user is None else user.name
            for name in sorted({n for n in job[1] or () if isinstance(n, str) and n != own}):
                definers.append((name, _user_find(tx, name)))
    return TokenIdentity(token=token, user=user, job_status=job_status, definers=tuple(definers))


def _token_get(tx: Tx, token_id: int) -> ApiToken:
    row = tx.conn.execute(select(*TOKEN_COLUMNS).where(api_tokens.c.id == token_id)).first()
    if row is None:
        raise NotFound(f"token {token_id} does not exist", {"token_id": token_id})
    return token_from_row(row)


def _tokens_list(tx: Tx, user_id: int | None, kinds: tuple[str, ...] | None) -> list[ApiToken]:
    stmt = select(*TOKEN_COLUMNS).order_by(api_tokens.c.id.desc()).limit(_TOKENS_LISTED)
    if user_id is not None:
        stmt = stmt.where(api_tokens.c.user_id == user_id)
    if kinds is not None:
        stmt = stmt.where(api_tokens.c.kind.in_(kinds))
    return [token_from_row(row) for row in tx.conn.execute(stmt)]


def _token_revoke(tx: Tx, token_id: int) -> ApiToken:
    row = tx.conn.execute(
        update(api_tokens)
        .where(api_tokens.c.id == token_id)
        .values(revoked=True)
        .returning(*TOKEN_COLUMNS)
    ).first()
    if row is None:
        raise NotFound(f"token {token_id} does not exist", {"token_id": token_id})
    return token_from_row(row)


def _token_revoke_by_hash(tx: Tx, token_hash: str, kind: str | None) -> ApiToken | None:
    where = [api_tokens.c.token_hash == token_hash, api_tokens.c.revoked.is_(False)]
    if kind is not None:
        where.append(api_tokens.c.kind == kind)
    before = tx.conn.execute(select(*TOKEN_COLUMNS).where(*where)).first()
    if before is None:
        return None
    done = tx.conn.execute(update(api_tokens).where(*where).values(revoked=True)).rowcount
    return token_from_row(before) if done else None


def _session_token_create(tx: Tx, job_id: int, user_name: str, token_hash: str) -> User | None:
    user = _user_find(tx, user_name)
    if user is None or not user.active:
        return user
    tx.conn.execute(
        insert(api_tokens).values(
            name=f"session of job {job_id}",
            token_hash=token_hash,
            role=user.role,
            created_at=tx.now,
            revoked=False,
            user_id=user.id,
            kind="session",
            job_id=job_id,
        )
    )
    return user

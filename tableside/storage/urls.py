"""Database URL normalisation.

Users and the embedded server hand us libpq-style URLs (``postgresql://``, ``postgres://``, unix-socket form
``postgresql://user@/db?host=/run/postgresql``). SQLAlchemy needs the ``postgresql+asyncpg`` driver name.
SQLAlchemy's asyncpg dialect passes unknown query parameters straight to ``asyncpg.connect`` as keyword
arguments, so ``host=/dir`` (a socket directory) works as-is; we only translate the libpq-only ones.
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url

_ASYNC_DRIVER = "postgresql+asyncpg"
_ACCEPTED = {"postgres", "postgresql", "postgresql+asyncpg"}

# libpq sslmode -> asyncpg ``ssl`` (asyncpg accepts the same mode names under a different key).
_SSL_KEYS = ("sslmode",)


def to_async_url(url: str) -> str:
    """Return ``url`` rewritten for SQLAlchemy + asyncpg (``postgresql+asyncpg://...``).

    Raises ValueError for a non-Postgres URL."""
    parsed: URL = make_url(url)
    if parsed.drivername not in _ACCEPTED:
        raise ValueError(f"not a PostgreSQL URL: {parsed.drivername}://...")
    query = dict(parsed.query)
    for key in _SSL_KEYS:
        if key in query and "ssl" not in query:
            query["ssl"] = query.pop(key)
    parsed = parsed.set(drivername=_ASYNC_DRIVER, query=query)
    return parsed.render_as_string(hide_password=False)


def to_plain_url(url: str) -> str:
    """The libpq/asyncpg form (``postgresql://...``) of any accepted URL, for ``asyncpg.connect``/psql."""
    parsed: URL = make_url(url)
    if parsed.drivername not in _ACCEPTED:
        raise ValueError(f"not a PostgreSQL URL: {parsed.drivername}://...")
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database on the same server (same driver form as given)."""
    return make_url(url).set(database=database).render_as_string(hide_password=False)

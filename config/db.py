"""Running database work off the event loop, and the hot-path lookup helper."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections
from django.db.models import Model
from django.db.models.sql import Query

M = TypeVar("M", bound=Model)


def in_thread(func: Any) -> Any:
    """`func` as a coroutine function that runs in the thread pool. Channels' default (one shared
    thread per process) would queue every caller behind each other; Django's connection pool gives
    each thread its own connection, handed back to the pool when the call ends.

    The hand-back is done here rather than by channels' DatabaseSyncToAsync, whose hook channels'
    test communicator switches off: every call would then keep a pooled connection for good."""

    def run(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(run, thread_sensitive=False)


def placeholders(count: int) -> str:
    """`%s, %s, ...` for an SQL `IN (...)` list of `count` parameters: plain SQL on the hot paths
    carries every value as a parameter, never in the statement's text."""
    return ", ".join(["%s"] * count)


# --- Hot-path lookups -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Lookup:
    sql: str
    names: list[str]  # the model's attnames, in column order
    related_model: type[Model] | None
    related_names: list[str]
    converters: dict[int, tuple[list[Any], Any]]  # column position -> (converters, column)


def fetch_one(
    model: type[M], where: str, params: Sequence[Any], *, related: str | None = None, using: str = DEFAULT_DB_ALIAS
) -> M | None:
    """The row of `model` matching `where` (an SQL condition on its columns, written `m.<column>`,
    with %s placeholders), with its required (non-null) foreign key `related` loaded as
    select_related() would (an inner join), or None. For a lookup of a unique key made on every
    request or connect (an API key, a signing key, an end user): the SQL is built once per
    process, where the ORM's compile of the same query costs ~4x running it. Values go through the
    ORM's own converters, so the instances are what `.first()` returns."""
    rows = fetch_all(model, where, params, related=related, tail="LIMIT 1", using=using)
    return rows[0] if rows else None


def fetch_all(
    model: type[M],
    where: str,
    params: Sequence[Any],
    *,
    related: str | None = None,
    tail: str = "",
    using: str = DEFAULT_DB_ALIAS,
) -> list[M]:
    """As fetch_one, every matching row; `tail` is what follows the WHERE clause (ORDER BY, LIMIT;
    placeholders allowed: `params` holds the WHERE clause's values, then the tail's). For the
    queries of every fan-out round."""
    lookup = _lookup(model, where, related, tail, using)
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(lookup.sql, params)
        rows = cursor.fetchall()
    split = len(lookup.names)
    instances = []
    for row in rows:
        values = list(row)
        for position, (converters, column) in lookup.converters.items():
            for converter in converters:
                values[position] = converter(values[position], column, connection)
        instance = model.from_db(using, lookup.names, values[:split])
        if lookup.related_model is not None:  # set exactly when `related` is
            setattr(instance, str(related), lookup.related_model.from_db(using, lookup.related_names, values[split:]))
        instances.append(instance)
    return instances


@functools.cache
def _lookup(model: type[Model], where: str, related: str | None, tail: str, using: str) -> _Lookup:
    fields = list(model._meta.concrete_fields)
    selected: list[tuple[str, Any]] = [("m", field) for field in fields]
    joins = ""
    related_model: type[Model] | None = None
    related_fields: list[Any] = []
    if related is not None:
        foreign_key = model._meta.get_field(related)
        related_model = foreign_key.related_model  # type: ignore[assignment]
        assert related_model is not None
        related_fields = list(related_model._meta.concrete_fields)
        selected += [("r", field) for field in related_fields]
        joins = (
            f" JOIN {related_model._meta.db_table} r"
            f" ON r.{related_model._meta.pk.column} = m.{foreign_key.column}"  # type: ignore[union-attr]
        )
    connection = connections[using]
    select = ", ".join(f"{alias}.{connection.ops.quote_name(field.column)}" for alias, field in selected)
    columns: list[Any] = [field.get_col(alias) for alias, field in selected]
    compiler = connection.ops.compiler("SQLCompiler")(Query(model), connection, using)
    return _Lookup(
        sql=f"SELECT {select} FROM {model._meta.db_table} m{joins} WHERE {where} {tail}",  # noqa: S608 - no values
        names=[field.attname for field in fields],
        related_model=related_model,
        related_names=[field.attname for field in related_fields],
        converters=compiler.get_converters(columns),
    )

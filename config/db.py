"""Running database work off the event loop, and the hot-path lookup and insert helpers."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections
from django.db.models import AutoField, Field, Model
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
    return [instance for instance, _ in fetch_with(model, where, params, related=related, tail=tail, using=using)]


def fetch_with(
    model: type[M],
    where: str,
    params: Sequence[Any],
    *,
    related: str | None = None,
    extra: tuple[str, ...] = (),
    tail: str = "",
    using: str = DEFAULT_DB_ALIAS,
) -> list[tuple[M, tuple[Any, ...]]]:
    """As fetch_all, with the values of `extra` (SQL expressions without placeholders, selected
    after the model's columns: a correlated subquery, say) beside each instance, as the database
    driver returns them: one statement where a second would cost a round trip."""
    lookup = _lookup(model, where, related, extra, tail, using)
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(lookup.sql, params)
        rows = cursor.fetchall()
    split = len(lookup.names)
    split_related = split + len(lookup.related_names)
    results = []
    for row in rows:
        values = list(row)
        for position, (converters, column) in lookup.converters.items():
            for converter in converters:
                values[position] = converter(values[position], column, connection)
        instance = model.from_db(using, lookup.names, values[:split])
        if lookup.related_model is not None:  # set exactly when `related` is
            related_values = values[split:split_related]
            setattr(instance, str(related), lookup.related_model.from_db(using, lookup.related_names, related_values))
        results.append((instance, tuple(values[split_related:])))
    return results


@functools.cache
def _lookup(
    model: type[Model], where: str, related: str | None, extra: tuple[str, ...], tail: str, using: str
) -> _Lookup:
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
    select = ", ".join(
        [f"{alias}.{connection.ops.quote_name(field.column)}" for alias, field in selected] + list(extra)
    )
    columns: list[Any] = [field.get_col(alias) for alias, field in selected]
    compiler = connection.ops.compiler("SQLCompiler")(Query(model), connection, using)
    return _Lookup(
        sql=f"SELECT {select} FROM {model._meta.db_table} m{joins} WHERE {where} {tail}",  # noqa: S608 - no values
        names=[field.attname for field in fields],
        related_model=related_model,
        related_names=[field.attname for field in related_fields],
        converters=compiler.get_converters(columns),
    )


# --- Hot-path inserts -----------------------------------------------------------------------------

# Parameters per INSERT statement at most: SQLite allows 32,766 (PostgreSQL 65,535).
_MAX_INSERT_PARAMETERS = 30_000


def insert_all(objs: Sequence[Model], *, ignore_conflicts: bool = False, using: str = DEFAULT_DB_ALIAS) -> None:
    """Insert new instances of one model as bulk_create() does (defaults, auto_now_add, JSON
    adaptation: each value goes through its field's pre_save and get_db_prep_save), in one
    statement per 30,000 parameters, with the SQL built once per process and row count: a
    publish's inserts (the event, its topic links, its outbox job) spent more CPU in the ORM's
    compile than in PostgreSQL. An auto-increment primary key is set on each instance from
    RETURNING, in row order, as bulk_create relies on too. `ignore_conflicts` skips rows that
    would break a unique constraint (ON CONFLICT DO NOTHING, on both databases); the instances'
    auto-increment keys are then left unset, as bulk_create leaves them (RETURNING would skip the
    ignored rows, so keys and rows would not line up)."""
    if not objs:
        return
    model = type(objs[0])
    connection = connections[using]
    fields, returning = _insert_fields(model)
    returning = returning and not ignore_conflicts
    per_statement = max(1, _MAX_INSERT_PARAMETERS // len(fields))
    with connection.cursor() as cursor:
        for start in range(0, len(objs), per_statement):
            chunk = objs[start : start + per_statement]
            sql = _insert_sql(model, len(chunk), ignore_conflicts, returning, using)
            params = [
                field.get_db_prep_save(field.pre_save(obj, True), connection) for obj in chunk for field in fields
            ]
            cursor.execute(sql, params)
            if returning:
                for obj, (pk,) in zip(chunk, cursor.fetchall(), strict=True):
                    obj.pk = pk
    for obj in objs:
        obj._state.adding, obj._state.db = False, using


def typed_values(objs: Sequence[Model], *, using: str = DEFAULT_DB_ALIAS) -> tuple[list[str], str, list[list[Any]]]:
    """New instances of one model as rows of an SQL VALUES list, for an INSERT ... SELECT that
    computes some columns in the statement itself (PostgreSQL's data-modifying CTEs): the columns
    insert_all would write (quoted); one row's placeholders, each cast to its column's type
    (PostgreSQL takes an untyped parameter in VALUES for text), without the parentheses; and
    each instance's parameters, prepared as insert_all prepares them."""
    model = type(objs[0])
    connection = connections[using]
    fields, _ = _insert_fields(model)
    row = ", ".join(f"CAST(%s AS {field.db_type(connection)})" for field in fields)
    params = [[field.get_db_prep_save(field.pre_save(obj, True), connection) for field in fields] for obj in objs]
    return [connection.ops.quote_name(str(field.column)) for field in fields], row, params


@functools.cache
def _insert_fields(model: type[Model]) -> tuple[tuple[Field[Any, Any], ...], bool]:
    """The columns an insert writes (every concrete field but an auto-increment key and a
    generated column, as bulk_create), and whether the key comes back from the database."""
    auto = isinstance(model._meta.pk, AutoField)  # BigAutoField is one too
    fields = tuple(
        field
        for field in model._meta.concrete_fields
        if not (auto and field.primary_key) and not getattr(field, "generated", False)
    )
    return fields, auto


@functools.lru_cache(maxsize=256)
def _insert_sql(model: type[Model], rows: int, ignore_conflicts: bool, returning: bool, using: str) -> str:
    connection = connections[using]
    fields, _ = _insert_fields(model)
    quote = connection.ops.quote_name
    row = f"({placeholders(len(fields))})"
    columns = ", ".join(quote(str(field.column)) for field in fields)
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES {', '.join([row] * rows)}"  # noqa: S608
    if ignore_conflicts:
        sql += " ON CONFLICT DO NOTHING"
    if returning:
        sql += f" RETURNING {quote(str(model._meta.pk.column))}"  # type: ignore[union-attr]
    return sql

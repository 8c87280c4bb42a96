"""Secrets at rest: values the app must read back in clear (a merchant's postback HMAC secret,
a webhook endpoint's signing secret, a store connector's signing secret) are stored encrypted
with Fernet (AES-128-CBC and HMAC-SHA256, from ``cryptography``).

The keys are ``settings.FIELD_ENCRYPTION_KEYS`` (the environment variable of that name):
Fernet keys, newest first. The first encrypts; every one of them decrypts, so a new key can be
put in front while values encrypted with the old ones are still read (``manage.py
rotate_secrets`` then re-encrypts them with the new one; README.md, "Rotating the encryption
keys").

A stored value is ``MARK`` followed by the Fernet token, so that an encrypted value is
recognisable (by the migrations that encrypt what was stored in clear, and by the rotation).
``EncryptedTextField`` encrypts on the way to the database and decrypts on the way back: the
code reads and assigns plain strings. A value no key opens raises ``DecryptionError``; it is
never read as an empty or a wrong secret.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction

MARK = "enc:v1:"
KEY_HELP = 'make one with: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'


class DecryptionError(ImproperlyConfigured):
    """A stored value that none of FIELD_ENCRYPTION_KEYS opens (or that is not encrypted)."""


def current_keys() -> tuple[str, ...]:
    keys = tuple(settings.FIELD_ENCRYPTION_KEYS)
    if not keys:
        raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEYS is empty: set one or more Fernet keys, newest first ({KEY_HELP}).")
    return keys


@lru_cache(maxsize=8)
def _fernets(keys: tuple[str, ...]) -> tuple[MultiFernet, Fernet]:
    """(all the keys, the newest alone) for these keys."""
    try:
        each = [Fernet(key) for key in keys]
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            f"FIELD_ENCRYPTION_KEYS holds a value that is not a Fernet key (32 url-safe base64-encoded bytes); {KEY_HELP}."
        ) from None
    return MultiFernet(each), each[0]


def is_encrypted(value) -> bool:
    return isinstance(value, str) and value.startswith(MARK)


def encrypt(plain: str) -> str:
    """``plain`` encrypted with the newest key, marked."""
    every, _ = _fernets(current_keys())
    return MARK + every.encrypt(plain.encode("utf-8")).decode("ascii")


def decrypt(stored: str, *, where: str = "a value") -> str:
    """The clear text of a value ``encrypt`` made, with whichever key opens it. ``where``
    names the column in the error."""
    if not is_encrypted(stored):
        raise DecryptionError(
            f"{where} is not encrypted (it does not start with {MARK!r}): run `manage.py migrate`, whose migrations "
            "encrypt what was stored in clear."
        )
    every, _ = _fernets(current_keys())
    try:
        return every.decrypt(stored[len(MARK):].encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise DecryptionError(
            f"{where} cannot be decrypted with any key of FIELD_ENCRYPTION_KEYS: the key it was encrypted with is "
            "missing (keys are comma-separated, newest first; keep the old ones until `manage.py rotate_secrets` has run)."
        ) from None


def needs_rotation(stored: str) -> bool:
    """Whether a value is encrypted with another key than the newest."""
    _, newest = _fernets(current_keys())
    try:
        newest.decrypt(stored[len(MARK):].encode("ascii"))
    except InvalidToken:
        return True
    return False


def rotate(stored: str, *, where: str = "a value") -> str:
    """The value encrypted again with the newest key."""
    return encrypt(decrypt(stored, where=where))


class EncryptedTextField(models.TextField):
    """Text stored encrypted (see the module's docstring); read and assigned in clear. The
    empty string and NULL are stored as they are (nothing to hide, and "no secret" stays
    visible). Stored values differ at every save (a fresh IV), so the column cannot be
    searched: only ``isnull`` is allowed as a lookup."""

    description = "Text encrypted at rest with FIELD_ENCRYPTION_KEYS"

    def where(self) -> str:
        return f"{self.model._meta.db_table}.{self.column}"

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return decrypt(value, where=self.where())

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)

    def get_lookup(self, lookup_name):
        return super().get_lookup(lookup_name) if lookup_name == "isnull" else None


# --- The columns, for the migrations and the rotation ----------------------------------------


def encrypted_columns() -> list[tuple[type[models.Model], EncryptedTextField]]:
    """Every (model, field) of an installed app whose field is an EncryptedTextField."""
    from django.apps import apps

    return [
        (model, field)
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if isinstance(field, EncryptedTextField) and not model._meta.proxy
    ]


def recode_column(
    connection, table: str, column: str, pk_column: str, change: Callable[[str], str | None], *, batch_size: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Rewrite the non-empty values of one column, read and written raw (no field conversion):
    ``change(value)`` returns the new value or None to leave it. One transaction per batch of
    rows, in primary key order; a row changed since it was read is left for the next run.
    ``progress(rows read, values rewritten)`` after each batch. Returns how many were rewritten."""
    q = connection.ops.quote_name
    pk, col, tbl = q(pk_column), q(column), q(table)
    first = f"SELECT {pk}, {col} FROM {tbl} WHERE {col} IS NOT NULL AND {col} <> '' ORDER BY {pk} LIMIT %s"
    after = f"SELECT {pk}, {col} FROM {tbl} WHERE {pk} > %s AND {col} IS NOT NULL AND {col} <> '' ORDER BY {pk} LIMIT %s"
    update = f"UPDATE {tbl} SET {col} = %s WHERE {pk} = %s AND {col} = %s"
    last, read, changed = None, 0, 0
    while True:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            if last is None:
                cursor.execute(first, [batch_size])
            else:
                cursor.execute(after, [last, batch_size])
            rows = cursor.fetchall()
            for row_pk, value in rows:
                new = change(value)
                if new is not None and new != value:
                    cursor.execute(update, [new, row_pk, value])
                    changed += cursor.rowcount
        if not rows:
            return changed
        last = rows[-1][0]
        read += len(rows)
        if progress is not None:
            progress(read, changed)
        if len(rows) < batch_size:
            return changed


def encrypt_column(connection, table: str, column: str, pk_column: str = "id") -> int:
    """Encrypt the values stored in clear (a migration's forward step); encrypted ones are left."""
    return recode_column(connection, table, column, pk_column, lambda value: None if is_encrypted(value) else encrypt(value))


def decrypt_column(connection, table: str, column: str, pk_column: str = "id") -> int:
    """Store the encrypted values in clear again (a migration's backward step)."""
    where = f"{table}.{column}"
    return recode_column(
        connection, table, column, pk_column, lambda value: decrypt(value, where=where) if is_encrypted(value) else None
    )


def rotate_column(connection, table: str, column: str, pk_column: str = "id", *, batch_size: int = 500, progress=None) -> int:
    """Re-encrypt with the newest key the values another key encrypted."""
    where = f"{table}.{column}"
    return recode_column(
        connection, table, column, pk_column,
        lambda value: rotate(value, where=where) if is_encrypted(value) and needs_rotation(value) else None,
        batch_size=batch_size, progress=progress,
    )  # fmt: skip


def column_migration(app_label: str, model_name: str, field_name: str):
    """The (forwards, backwards) functions of a migration's ``RunPython`` for a field that has
    just become an EncryptedTextField: encrypt the values it holds in clear; decrypt them
    again (with the keys in force) before the field goes back to plain text."""

    def column(apps):
        model = apps.get_model(app_label, model_name)
        return model._meta.db_table, model._meta.get_field(field_name).column, model._meta.pk.column

    def forwards(apps, schema_editor):
        encrypt_column(schema_editor.connection, *column(apps))

    def backwards(apps, schema_editor):
        decrypt_column(schema_editor.connection, *column(apps))

    return forwards, backwards

"""A job's chunks and payload are large JSON texts written once and read once or
twice: on PostgreSQL 14+ built with lz4 they are compressed with lz4 rather than pglz,
which costs the server several times less CPU per chunk. Elsewhere (SQLite, an older
PostgreSQL, a server without lz4) nothing changes."""

from django.db import DatabaseError, migrations, transaction

COLUMNS = {"BulkChunk": ("source", "staged", "keys"), "BulkPayload": ("items",)}


def compress(apps, schema_editor, method):
    connection = schema_editor.connection
    if connection.vendor != "postgresql" or connection.pg_version < 140000:
        return
    quote = schema_editor.quote_name
    for model, columns in COLUMNS.items():
        table = quote(apps.get_model("bulkops", model)._meta.db_table)
        changes = ", ".join(f"ALTER COLUMN {quote(c)} SET COMPRESSION {method}" for c in columns)
        schema_editor.execute(f"ALTER TABLE {table} {changes}")


def use_lz4(apps, schema_editor):
    try:
        with transaction.atomic(using=schema_editor.connection.alias):
            compress(apps, schema_editor, "lz4")
    except DatabaseError:
        pass  # a server built without lz4: pglz stays


def use_default(apps, schema_editor):
    compress(apps, schema_editor, "DEFAULT")


class Migration(migrations.Migration):
    dependencies = [("bulkops", "0004_admin_column_mapping")]

    operations = [migrations.RunPython(use_lz4, use_default, elidable=True)]

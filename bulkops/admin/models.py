"""What the admin import remembers: column mappings staff confirmed.

A mapping is kept per model and per header row (its normalised form, so
"Unit Price" and "unit_price" count as the same header), and offered again the
next time a file with the same headers comes for that model. The single
header -> field choices of every mapping also serve as suggestions for files
whose header row differs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from django.conf import settings
from django.db import models
from django.utils import timezone

from bulkops.engine.readers.headers import normalise_header


def headers_signature(headers: Sequence[str]) -> str:
    """A stable digest of a header row: normalised names, empty cells kept in place."""
    normalised = [normalise_header(header) for header in headers]
    return hashlib.sha256(json.dumps(normalised).encode()).hexdigest()


class ColumnMapping(models.Model):
    """One confirmed mapping of a header row to a model's fields.

    ``mapping`` holds ``{file header: field name or null}`` (null: the column is
    ignored), in file order.
    """

    model = models.CharField(max_length=200, help_text='The model, e.g. "catalog.product".')
    signature = models.CharField(
        max_length=64, help_text="SHA-256 of the normalised header row (headers_signature)."
    )
    headers = models.JSONField(help_text="The header row as it was in the file.")
    mapping = models.JSONField(help_text="File header -> field name, or null to ignore it.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who confirmed it last.",
    )
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["model", "signature"], name="bulkops_columnmapping_model_headers"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model}: {', '.join(self.headers)}"

"""The admin side of bulkops: spreadsheet import on any bulk-enabled ModelAdmin, and
the jobs changelist.

    from bulkops.admin import BulkImportExportMixin

    @admin.register(Product)
    class ProductAdmin(BulkImportExportMixin, admin.ModelAdmin):
        ...

Django's admin autodiscovery imports this module, which registers ``BulkJob``'s admin
(``/admin/bulkops/bulkjob/``).
"""

from .jobs import BulkJobAdmin
from .options import BulkImportExportMixin, BulkImportMixin

__all__ = ["BulkImportExportMixin", "BulkImportMixin", "BulkJobAdmin"]

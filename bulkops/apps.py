from django.apps import AppConfig


class BulkOpsConfig(AppConfig):
    name = "bulkops"
    verbose_name = "Bulk operations"
    default_auto_field = "django.db.models.BigAutoField"

from django.apps import AppConfig


class BulkOpsConfig(AppConfig):
    name = "bulkops"
    verbose_name = "Bulk operations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)

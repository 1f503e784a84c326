from django.apps import AppConfig


class BulkOpsConfig(AppConfig):
    name = "bulkops"
    verbose_name = "Bulk operations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The job-finished e-mail, BULKOPS["JOB_FINISHED"] and their system check.
        from .jobs import notify  # noqa: F401

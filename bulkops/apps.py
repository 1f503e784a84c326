from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class BulkOpsConfig(AppConfig):
    name = "bulkops"
    verbose_name = "Bulk operations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)

        # Each app's bulk.py registers its bulk-enabled models (see bulkops.registry).
        autodiscover_modules("bulk")
        # The job-finished e-mail, BULKOPS["JOB_FINISHED"] and their system check.
        from .jobs import notify  # noqa: F401

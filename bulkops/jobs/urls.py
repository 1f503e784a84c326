"""URLs of the job API; a project includes them under its API prefix::

    path("api/", include("bulkops.jobs.urls")),

``errors.csv`` and ``errors.xlsx`` are file names, so they take no trailing slash.
"""

from django.urls import re_path
from rest_framework.routers import SimpleRouter

from .api import BulkJobViewSet

router = SimpleRouter()
router.register("bulk-jobs", BulkJobViewSet, basename="bulkjob")

urlpatterns = [
    re_path(
        r"^bulk-jobs/(?P<pk>[^/.]+)/errors\.(?P<fmt>csv|xlsx)$",
        BulkJobViewSet.as_view({"get": "errors"}),
        name="bulkjob-errors",
    ),
    *router.urls,
]

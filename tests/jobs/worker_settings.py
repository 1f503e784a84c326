"""Settings of the RQ workers the job tests start: the project's, pointed at the test
database, the test's queue and media root, with the test's BULKOPS settings."""

import json
import os

from project.settings import *  # noqa: F403
from project.settings import DATABASES, REDIS_URL

DATABASES["default"]["NAME"] = os.environ["BULKOPS_TEST_DB_NAME"]
BULKOPS = json.loads(os.environ.get("BULKOPS_TEST_SETTINGS", "{}"))
MEDIA_ROOT = os.environ["BULKOPS_TEST_MEDIA_ROOT"]
RQ_QUEUES = {
    os.environ["BULKOPS_TEST_QUEUE"]: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 600},
}

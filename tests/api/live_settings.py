"""Settings of the live gunicorn server some API tests start (tests/api/live.py): the
project's, with ``BULKOPS`` from the environment."""

import json
import os

from project.settings import *  # noqa: F403

DEBUG = False
BULKOPS = json.loads(os.environ.get("BULKOPS_LIVE_SETTINGS", "{}"))

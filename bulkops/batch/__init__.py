"""The generic batch endpoint, ``POST /api/batch/`` (CONTRACT §3 "Generic batch").

- ``envelope``: the body, checked in full before anything runs;
- ``references``: ``{id.body.path}`` values taken from earlier responses;
- ``execution``: each request through its real view, in order, side by side or in one
  transaction;
- ``views``: ``BatchView``, the door; ``openapi``: its schema.
"""

from .views import BatchView

__all__ = ["BatchView"]

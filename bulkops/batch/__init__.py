"""The generic batch endpoint, ``POST /api/batch/`` (CONTRACT §3 "Generic batch").

- ``envelope``: the body, checked in full before anything runs; ``targets``: which
  urls a batch may call;
- ``references``: ``{id.body.path}`` values taken from earlier responses;
- ``calls``: one request through its real view, as a direct call;
- ``execution``: the whole batch, in order, side by side or in one transaction;
- ``views``: ``BatchView``, the door; ``openapi``: its schema.
"""

from .views import BatchView

__all__ = ["BatchView"]

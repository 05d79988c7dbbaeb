"""Async inference over a durable queue (``Prefer: respond-async``).

``service.AsyncService`` accepts and serves jobs, ``routes.requests_router`` answers
``GET``/``DELETE /v2/requests/{id}``, ``sqlite_queue.SQLiteJobQueue`` is the embedded durable
queue behind the ``jobs.JobQueue`` seam. Kept import-light: the settings import ``config``.
"""

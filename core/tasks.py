"""Celery tasks found by name: a module that queues the step after it (an event stored, a
webhook to send) names the task instead of importing the module that defines it, so the task
module can import the service and no circle forms. A worker registers every installed app's
``tasks`` module when it starts (``autodiscover_tasks`` in config/celery.py); a web process
does on the first name it does not know. With tasks inline (no ``REDIS_URL``) the task runs
here and now, as ``delay`` would."""

from __future__ import annotations

from celery import current_app


def task(name: str):
    """The registered task called ``name`` (``KeyError`` if no installed app defines it)."""
    try:
        return current_app.tasks[name]
    except KeyError:
        current_app.loader.import_default_modules()  # runs the autodiscovery of the apps' tasks
        return current_app.tasks[name]


def tasks_inline() -> bool:
    """Whether tasks run inline, here and now (no broker): as the Celery app says."""
    return bool(current_app.conf.task_always_eager)

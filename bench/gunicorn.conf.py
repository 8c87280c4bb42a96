"""Gunicorn settings for the redirect benchmark (and a starting point for production).

The environment can override each choice, so that other shapes can be compared:
GUNICORN_BIND, GUNICORN_WORKERS, GUNICORN_WORKER_CLASS, GUNICORN_THREADS, GUNICORN_KEEPALIVE.
See bench/README.md for why these defaults.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "4"))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "2"))
backlog = 2048
# Import Django once in the master; workers fork with it loaded (no connection is opened
# before the fork: Django connects lazily).
preload_app = True
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "warning")
timeout = 30
graceful_timeout = 10

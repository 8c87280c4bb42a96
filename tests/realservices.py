"""Helpers for the tests that need real services: PostgreSQL, Redis, a Celery worker, threads.

Tests marked ``postgres`` skip on SQLite and tests marked ``redis`` skip without
``REDIS_URL``; the skip marks here say so with a reason, so a dev machine without the
services runs the rest of the suite and CI (``.ci/run``) runs everything.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

BASE_DIR = Path(__file__).resolve().parent.parent

# The Redis database the Celery worker test owns: flushed before and after use.
WORKER_REDIS_DB = 14
# The Redis database the shared rate-limit tests count in (each run under keys of its own).
RATELIMIT_REDIS_DB = 13


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def redis_url() -> str:
    return os.environ.get("REDIS_URL", "") or getattr(settings, "REDIS_URL", "")


needs_postgres = pytest.mark.skipif(
    not is_postgres(),
    reason="needs PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/test (the suite runs on SQLite)",
)
needs_redis = pytest.mark.skipif(
    not redis_url(), reason="needs a real Redis: set REDIS_URL=redis://127.0.0.1:6379/0"
)


def redis_url_with_db(url: str, db: int) -> str:
    """The same Redis server, another database number."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", "", ""))


def database_url_in_use() -> str:
    """A DATABASE_URL naming the database this test process is connected to right now
    (the test database, e.g. ``test_test_gw0`` under xdist)."""
    conf = connection.settings_dict
    user = quote(conf.get("USER") or "", safe="")
    password = conf.get("PASSWORD") or ""
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    host = conf.get("HOST") or "127.0.0.1"
    port = f":{conf['PORT']}" if conf.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{quote(conf['NAME'], safe='')}"


# --- Celery -----------------------------------------------------------------------------


def _reset_broker_pools(app) -> None:
    """Close and forget the app's broker connection and producer pools, so that the next
    publish connects to whatever ``broker_url`` says now. Celery caches both on the app on
    first use, and kombu keeps them in global groups keyed by connection: a closed pool left
    there would be handed out again ("Acquire on closed pool")."""
    from kombu import pools

    amqp = app.__dict__.get("amqp")
    cached = [app._pool, amqp._producer_pool if amqp is not None else None]
    for pool in cached:
        if pool is None:
            continue
        for group in (pools.producers, pools.connections):
            for key, value in list(group.items()):
                if value is pool:
                    dict.__delitem__(group, key)  # the raw key: EqualityDict hashes again
        with contextlib.suppress(Exception):
            pool.force_close_all()
    app._pool = None
    if amqp is not None:
        amqp._producer_pool = None


@contextlib.contextmanager
def celery_publishing_to(broker_url: str) -> Iterator[None]:
    """In this process, send tasks to ``broker_url`` instead of running them inline."""
    from config.celery import app

    saved = {name: app.conf[name] for name in ("broker_url", "task_always_eager")}
    _reset_broker_pools(app)
    app.conf.broker_url = broker_url
    app.conf.task_always_eager = False
    # The cache on the broker's Redis too, as with REDIS_URL: the drainers' leases live there.
    caches = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": broker_url}}
    try:
        with override_settings(CACHES=caches):
            yield
    finally:
        _reset_broker_pools(app)
        app.conf.broker_url = saved["broker_url"]
        app.conf.task_always_eager = saved["task_always_eager"]


@contextlib.contextmanager
def point_broker_at(broker_url: str) -> Iterator[None]:
    """Switch where this process publishes, for the duration of the block."""
    from config.celery import app

    saved = app.conf.broker_url
    _reset_broker_pools(app)
    app.conf.broker_url = broker_url
    try:
        yield
    finally:
        _reset_broker_pools(app)
        app.conf.broker_url = saved


class CeleryWorker:
    """A real ``celery -A config worker`` in a subprocess, its output kept in a file."""

    def __init__(self, *, database_url: str, broker_url: str, queues: str = "events,default", env: dict | None = None):
        self.database_url = database_url
        self.broker_url = broker_url
        self.queues = queues
        self.extra_env = env or {}
        self.process: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="celery-worker-", suffix=".log", delete=False)  # noqa: SIM115

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
        env.pop("SQLITE_PATH", None)
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DATABASE_URL=self.database_url,
            REDIS_URL=self.broker_url,
            SECRET_KEY="celery-worker-test-secret-key-0123456789abcdef",
            DEBUG="0",
            LOG_LEVEL="INFO",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        command = [
            sys.executable, "-m", "celery", "-A", "config", "worker",
            "-Q", self.queues, "--pool=solo", "--loglevel=INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "-n", f"pytest-{os.getpid()}@%h",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, cwd=BASE_DIR, env=self.env(), stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def wait_until_ready(self, timeout: float = 30.0) -> None:
        """Wait (bounded) for the worker's "ready" line; fail with its log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the Celery worker exited with {self.process.returncode}:\n{self.log()}")
            if " ready." in self.log():
                return
            time.sleep(0.1)
        pytest.fail(f"the Celery worker was not ready within {timeout:.0f} s:\n{self.log()}")

    def stop(self) -> None:
        """Warm shutdown, then kill; only this worker's own process group."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        self._log.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._log.name)


def wait_for(predicate: Callable[[], object], *, timeout: float = 30.0, interval: float = 0.1):
    """Poll ``predicate`` until it returns something truthy (bounded); return that or ``None``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value or None
        time.sleep(interval)


# --- Threads ----------------------------------------------------------------------------


def run_at_once(calls: list[Callable[[], object]], *, timeout: float = 60.0) -> list[object]:
    """Run each call in its own thread, all released together by a barrier; return their
    results in order. Each thread opens its own database connection before the barrier and
    closes it at the end; an exception in a thread is re-raised here."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)
    failures: list[BaseException] = []

    def worker(index: int, call: Callable[[], object]) -> None:
        try:
            connection.ensure_connection()
            barrier.wait(timeout=timeout)
            results[index] = call()
        except BaseException as exc:  # noqa: BLE001 - reported in the main thread
            failures.append(exc)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, call), daemon=True) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a request thread did not finish"
    if failures:
        raise failures[0]
    return results


# --- Services a test may stop -----------------------------------------------------------


def free_port() -> int:
    """A TCP port nothing listens on at the moment."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


REDIS_SERVER = shutil.which("redis-server") or ""

needs_redis_server = pytest.mark.skipif(not REDIS_SERVER, reason="needs the redis-server binary to run a Redis of its own")


class RedisServer:
    """A ``redis-server`` of the test's own on a free port, without persistence: one the
    test may stop and start again (never the shared one). Started again, it is empty."""

    def __init__(self):
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self._dir = tempfile.mkdtemp(prefix="redis-test-")

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 10.0) -> None:
        import redis

        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self._dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            if not wait_for(lambda: _pings(client), timeout=timeout, interval=0.05):
                pytest.fail(f"redis-server on port {self.port} did not answer within {timeout:.0f} s")
        finally:
            client.close()

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


class TcpProxy:
    """A TCP proxy on a free local port to ``upstream``, that the test can cut (every open
    connection dropped, new ones refused: the server is unreachable) and restore."""

    def __init__(self, upstream_host: str, upstream_port: int):
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._accepting: threading.Thread | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        self._stop.clear()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.05)
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Refuse new connections and drop the open ones, both ways."""
        self._stop.set()
        if self._accepting is not None:
            self._accepting.join(5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def restore(self) -> None:
        self.start()

    close = cut


@contextlib.contextmanager
def database_through(host: str, port: int) -> Iterator[None]:
    """This process's default connection goes to ``host:port`` (a proxy) for the block."""
    conf = connection.settings_dict
    saved = conf["HOST"], conf["PORT"]
    connection.close()
    conf["HOST"], conf["PORT"] = host, str(port)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            connection.close()
        conf["HOST"], conf["PORT"] = saved

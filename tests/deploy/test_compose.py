"""docker-compose.yml and the Dockerfile: the processes README.md's "Deployment" describes,
each wired to the queues the settings route to, with health checks and the environment.

Parsed here (PyYAML); where the docker compose CLI exists, ``docker compose config`` checks
the file as Compose reads it too."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read docker-compose.yml")

ROOT = Path(__file__).resolve().parents[2]
LONG_RUNNING = {"web", "worker", "worker-insights", "beat", "postgres", "redis"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def queues(command: list[str]) -> set[str]:
    return set(command[command.index("-Q") + 1].split(","))


def test_the_services_are_the_platforms_processes(compose):
    assert set(compose["services"]) == LONG_RUNNING | {"migrate"}
    assert set(compose["volumes"]) == {"pgdata", "redisdata", "clickspool"}


def test_every_long_running_service_has_a_health_check(compose):
    for name in LONG_RUNNING:
        check = compose["services"][name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert check["retries"] >= 3, name


def test_the_worker_pools_take_every_queue_the_settings_route_to_and_nothing_twice(compose):
    services = compose["services"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "config", "worker"]
    assert queues(services["worker"]["command"]) == {"events", "default"}
    assert queues(services["worker-insights"]["command"]) == {"insights"}
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()} | {settings.CELERY_TASK_DEFAULT_QUEUE}
    assert routed == {"events", "default", "insights"}
    assert services["beat"]["command"][:4] == ["celery", "-A", "config", "beat"]
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]


def test_the_app_services_share_the_environment_and_wait_for_the_migration(compose):
    for name in ("web", "worker", "worker-insights", "beat", "migrate"):
        env = compose["services"][name]["environment"]
        assert env["DATABASE_URL"] == "postgres://affiliate:${POSTGRES_PASSWORD:-affiliate}@postgres:5432/affiliate", name
        assert env["REDIS_URL"] == "redis://redis:6379/0", name
        assert env["SECRET_KEY"].startswith("${SECRET_KEY:?"), name
        assert env["FIELD_ENCRYPTION_KEYS"].startswith("${FIELD_ENCRYPTION_KEYS:?"), name
        assert env["DATABASE_REPLICA_URL"] == "${DATABASE_REPLICA_URL:-}", name
    for name in ("web", "worker", "worker-insights", "beat"):
        depends = compose["services"][name]["depends_on"]
        assert depends == {
            "postgres": {"condition": "service_healthy"}, "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }, name
    web = compose["services"]["web"]
    assert web["environment"]["CLICK_SPOOL_DIR"] == "/var/spool/affiliate-clicks"
    assert web["volumes"] == ["clickspool:/var/spool/affiliate-clicks"]
    assert "CLICK_SPOOL_DIR" not in compose["services"]["worker"]["environment"]


def test_the_dockerfile_builds_the_app_on_python_311():
    text = (ROOT / "Dockerfile").read_text()
    assert text.splitlines()[3] == "FROM python:3.11-slim"
    assert "RUN pip install -r requirements.txt" in text
    assert "manage.py collectstatic --noinput" in text
    assert 'FIELD_ENCRYPTION_KEYS="$(python -c ' in text  # a throwaway key, made at build time
    assert text.rstrip().endswith('CMD ["gunicorn", "-c", "bench/gunicorn.conf.py", "config.wsgi"]')
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {".git", ".venv", "tests", "db.sqlite3*", ".env"} <= set(ignored)
    assert "bench" not in ignored  # the gunicorn settings live in bench/


def _compose_cli() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.skipif(_compose_cli() is None, reason="no docker compose CLI on this machine")
def test_compose_reads_the_file():
    env = {**os.environ, "SECRET_KEY": "x" * 50, "FIELD_ENCRYPTION_KEYS": "o_F3bbbUXQUYXLffdc2RPjVc777HaGczPGbq3htJI4Y="}
    done = subprocess.run([*_compose_cli(), "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr

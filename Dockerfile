# The web app, the Celery workers and beat: one image, the command chooses the process
# (docker-compose.yml). Everything is configured by the environment (README.md,
# "Configuration"); nothing secret is baked in.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN useradd --system --uid 10001 --create-home app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# The static files, hashed and compressed for whitenoise (DEBUG off). collectstatic needs a
# SECRET_KEY and FIELD_ENCRYPTION_KEYS to import the settings: throwaway ones, not kept in the
# image's environment.
RUN SECRET_KEY=collectstatic-only \
    FIELD_ENCRYPTION_KEYS="$(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')" \
    DEBUG=0 python manage.py collectstatic --noinput \
    && mkdir -p /var/spool/affiliate-clicks \
    && chown app:app /var/spool/affiliate-clicks

USER app
EXPOSE 8000
# gunicorn with bench/gunicorn.conf.py (preloaded app, 4 sync workers by default); each of
# its choices comes from the environment: GUNICORN_BIND, GUNICORN_WORKERS,
# GUNICORN_WORKER_CLASS, GUNICORN_THREADS, GUNICORN_KEEPALIVE. On SIGTERM each worker
# stores the clicks its spool holds before it exits.
ENV GUNICORN_BIND=0.0.0.0:8000
CMD ["gunicorn", "-c", "bench/gunicorn.conf.py", "config.wsgi"]

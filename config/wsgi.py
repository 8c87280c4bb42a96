import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_wsgi_application()

# In front of Django: the tracking redirect of a cached link when the click spool is on
# (affiliate/fastpath.py), and a new registration or purchase on POST /api/v1/events/ with
# Celery workers on PostgreSQL (affiliate/eventpath.py). Every other request goes to Django
# as it is.
from affiliate.eventpath import EventFastPath  # noqa: E402
from affiliate.fastpath import TrackingFastPath  # noqa: E402

application = EventFastPath(TrackingFastPath(django_application))

# Tasks inline (the embedded default): this process sweeps the events left queued.
from affiliate.events import inline_sweeper  # noqa: E402

inline_sweeper.start()

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_wsgi_application()

# The tracking redirect of a cached link, answered in front of Django when the click spool
# is on (affiliate/fastpath.py); every other request goes to Django as it is.
from affiliate.fastpath import TrackingFastPath  # noqa: E402

application = TrackingFastPath(django_application)

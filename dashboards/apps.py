from django.apps import AppConfig


class DashboardsConfig(AppConfig):
    """The merchant's pages, on the top floor."""

    name = "dashboards"
    default_auto_field = "django.db.models.BigAutoField"

from django.apps import AppConfig


class PortalConfig(AppConfig):
    """The promoter portal: the promoter's pages and own API, on the top floor."""

    name = "portal"
    default_auto_field = "django.db.models.BigAutoField"

from django.apps import AppConfig


class AffiliateConfig(AppConfig):
    name = "affiliate"
    default_auto_field = "django.db.models.BigAutoField"

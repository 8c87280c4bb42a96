from django.apps import AppConfig


class PromotersConfig(AppConfig):
    name = "promoters"
    default_auto_field = "django.db.models.BigAutoField"

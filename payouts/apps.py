from django.apps import AppConfig


class PayoutsConfig(AppConfig):
    name = "payouts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.db.models.signals import post_migrate

        from .finance_group import finance_group_on_migrate

        post_migrate.connect(finance_group_on_migrate, sender=self, dispatch_uid="payouts.finance_group")
        # Downstream fills the upstream registries: affiliate never imports payouts.
        from affiliate import events

        from . import selectors, services, webhooks

        events.register_processor(services.process_conversions)
        events.register_body_section("attribution", selectors.event_attribution)
        events.register_body_section("commissions", selectors.event_commissions)
        events.register_failure_hook(webhooks.emit_event_failed)
        from affiliate import fraud

        from . import review

        fraud.register_reviewer("clear", review.conversion_clear)
        fraud.register_reviewer("reject", review.conversion_reject)

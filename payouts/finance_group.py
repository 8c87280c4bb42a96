"""The "Finance" group: the back office's people can read every model of the money apps,
edit payout policies, build, export and settle batches, approve commissions now and reverse
them with a reason, and nothing else (no users, no groups, no add or delete anywhere).

Created and refreshed to exactly these permissions after every ``migrate`` and by
``manage.py setup_finance_group``: permissions added to the group by hand are taken away."""

from __future__ import annotations

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.db import DEFAULT_DB_ALIAS, transaction

GROUP_NAME = "Finance"
READ_APPS = ("merchants", "promoters", "affiliate", "attribution", "payouts")
CHANGE_MODELS = ("payoutpolicy", "payoutbatch", "payoutline")
CUSTOM = ("approve_commission", "reverse_commission")


def finance_permission_codes(apps=global_apps) -> set[tuple[str, str]]:
    """(app label, codename) of every permission the group holds."""
    codes = {
        (label, f"view_{model._meta.model_name}")
        for label in READ_APPS
        for model in apps.get_app_config(label).get_models()
    }
    codes |= {("payouts", f"change_{name}") for name in CHANGE_MODELS}
    codes |= {("payouts", codename) for codename in CUSTOM}
    return codes


@transaction.atomic
def finance_group_refresh(*, apps=global_apps, using: str = DEFAULT_DB_ALIAS):
    """Create the group, or set its permissions back to exactly the list; returns the group."""
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for label in READ_APPS:  # the permissions exist whatever order the apps migrated in
        create_permissions(global_apps.get_app_config(label), verbosity=0, using=using, apps=apps)
    codes = finance_permission_codes(apps)
    wanted = [
        pk
        for pk, label, codename in Permission.objects.using(using)
        .filter(content_type__app_label__in=READ_APPS)
        .values_list("pk", "content_type__app_label", "codename")
        if (label, codename) in codes
    ]
    group, _ = Group.objects.using(using).get_or_create(name=GROUP_NAME)
    group.permissions.set(wanted)
    return group


def finance_group_on_migrate(sender, app_config=None, using=DEFAULT_DB_ALIAS, apps=global_apps, plan=None, **kwargs):
    """post_migrate: refresh the group once the payouts app (the last of these) is migrated."""
    if not global_apps.is_installed("django.contrib.auth"):
        return
    try:
        apps.get_model("auth", "Group")
        for label in READ_APPS:
            apps.get_app_config(label)
    except LookupError:  # a migration state without these apps (migrating backwards)
        return
    finance_group_refresh(apps=apps, using=using)

"""Webhook endpoints' signing secrets stored encrypted (core/crypto.py,
FIELD_ENCRYPTION_KEYS): the column becomes text, then the secrets stored in clear are
encrypted. Backwards, they are decrypted again (with the keys in force) before the column goes
back to 100 characters."""

from django.db import migrations

import core.crypto

encrypt_webhook_secrets, decrypt_webhook_secrets = core.crypto.column_migration("payouts", "WebhookEndpoint", "secret")


class Migration(migrations.Migration):

    dependencies = [
        ("payouts", "0009_review_and_event_failed"),
        ("affiliate", "0013_encrypted_secrets"),
    ]

    operations = [
        migrations.AlterField(
            model_name="webhookendpoint",
            name="secret",
            field=core.crypto.EncryptedTextField(
                help_text="Signs every delivery; shown once, when the endpoint is created; stored encrypted.",
            ),
        ),
        migrations.RunPython(encrypt_webhook_secrets, decrypt_webhook_secrets),
    ]

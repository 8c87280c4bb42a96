"""Merchants' postback secrets stored encrypted (core/crypto.py, FIELD_ENCRYPTION_KEYS):
the column becomes text, then the secrets stored in clear are encrypted. Backwards, they are
decrypted again (with the keys in force) before the column goes back to 128 characters."""

from django.db import migrations

import core.crypto

encrypt_postback_secrets, decrypt_postback_secrets = core.crypto.column_migration("affiliate", "Merchant", "postback_secret")


class Migration(migrations.Migration):

    dependencies = [
        ("affiliate", "0012_fraud_rules_failed_events"),
    ]

    operations = [
        migrations.AlterField(
            model_name="merchant",
            name="postback_secret",
            field=core.crypto.EncryptedTextField(
                editable=False,
                help_text="The HMAC key of signed postbacks: read back in clear to verify them, stored encrypted.",
            ),
        ),
        migrations.RunPython(encrypt_postback_secrets, decrypt_postback_secrets),
    ]

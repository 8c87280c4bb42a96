import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('affiliate', '0009_click_ip_link_time'),
    ]

    operations = [
        migrations.CreateModel(
            name='EventKey',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('registration', 'Registration'), ('purchase', 'Purchase'), ('refund', 'Refund'), ('idempotency', 'Idempotency')], max_length=16)),
                ('key', models.CharField(max_length=255)),
                ('refund_id', models.CharField(blank=True, default='', max_length=255)),
            ],
        ),
        migrations.AddField(
            model_name='eventkey',
            name='event',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='keys', to='affiliate.conversionevent'),
        ),
        migrations.AddField(
            model_name='eventkey',
            name='merchant',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='affiliate.merchant'),
        ),
        migrations.AddConstraint(
            model_name='eventkey',
            constraint=models.UniqueConstraint(fields=('merchant', 'kind', 'key', 'refund_id'), name='eventkey_unique'),
        ),
        # The keys of the events already recorded, before their unique indexes go.
        migrations.RunSQL(
            [
                """
                INSERT INTO affiliate_eventkey (merchant_id, kind, "key", refund_id, event_id)
                SELECT merchant_id, type,
                       CASE WHEN type = 'registration' THEN CAST(customer_id AS TEXT) ELSE order_id END,
                       CASE WHEN type = 'refund' THEN refund_id ELSE '' END,
                       id
                FROM affiliate_conversionevent
                """,
                """
                INSERT INTO affiliate_eventkey (merchant_id, kind, "key", refund_id, event_id)
                SELECT merchant_id, 'idempotency', idempotency_key, '', id
                FROM affiliate_conversionevent WHERE idempotency_key IS NOT NULL
                """,
            ],
            migrations.RunSQL.noop,
        ),
        migrations.RemoveConstraint(
            model_name='conversionevent',
            name='event_one_registration_per_customer',
        ),
        migrations.RemoveConstraint(
            model_name='conversionevent',
            name='event_one_purchase_per_order',
        ),
        migrations.RemoveConstraint(
            model_name='conversionevent',
            name='event_refund_unique',
        ),
        migrations.RemoveConstraint(
            model_name='conversionevent',
            name='event_idempotency_key_unique',
        ),
    ]

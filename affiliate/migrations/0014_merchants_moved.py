"""Its links to merchants and programs now point to the ``merchants`` app: state only, the
columns and constraints do not change."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('affiliate', '0013_encrypted_secrets'),
        ('insights', '0002_merchants_moved'),
        ('merchants', '0001_initial'),
        ('payouts', '0011_merchants_moved'),
        ('promoters', '0005_merchants_moved'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='referrallink',
                    name='merchant',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='links', to='merchants.merchant'),
                ),
                migrations.AlterField(
                    model_name='click',
                    name='merchant',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='merchants.merchant'),
                ),
                migrations.AlterField(
                    model_name='eventkey',
                    name='merchant',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='merchants.merchant'),
                ),
                migrations.AlterField(
                    model_name='conversionevent',
                    name='merchant',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='events', to='merchants.merchant'),
                ),
                migrations.RemoveField(
                    model_name='program',
                    name='merchant',
                ),
                migrations.AlterField(
                    model_name='customer',
                    name='merchant',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='customers', to='merchants.merchant'),
                ),
                migrations.AlterField(
                    model_name='conversionevent',
                    name='program',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='events', to='merchants.program'),
                ),
                migrations.AlterField(
                    model_name='referrallink',
                    name='program',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='links', to='merchants.program'),
                ),
                migrations.AlterField(
                    model_name='click',
                    name='program',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='merchants.program'),
                ),
                migrations.DeleteModel(
                    name='Merchant',
                ),
                migrations.DeleteModel(
                    name='Program',
                ),
            ],
        ),
    ]

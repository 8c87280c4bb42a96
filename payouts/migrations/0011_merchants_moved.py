"""Its links to merchants and programs now point to the ``merchants`` app: state only, the
columns and constraints do not change."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('merchants', '0001_initial'),
        ('payouts', '0010_encrypted_secrets'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='account',
                    name='merchant',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='merchants.merchant'),
                ),
                migrations.AlterField(
                    model_name='adjustment',
                    name='merchant',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='merchants.merchant'),
                ),
                migrations.AlterField(
                    model_name='commission',
                    name='merchant',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='merchants.merchant'),
                ),
                migrations.AlterField(
                    model_name='commission',
                    name='program',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='merchants.program'),
                ),
                migrations.AlterField(
                    model_name='journal',
                    name='merchant',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='merchants.merchant'),
                ),
                migrations.AlterField(
                    model_name='monthclose',
                    name='merchant',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='merchants.merchant'),
                ),
                migrations.AlterField(
                    model_name='payoutbatch',
                    name='merchant',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='merchants.merchant'),
                ),
                migrations.AlterField(
                    model_name='payoutpolicy',
                    name='program',
                    field=models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='payout_policy', to='merchants.program'),
                ),
                migrations.AlterField(
                    model_name='webhookendpoint',
                    name='merchant',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='merchants.merchant'),
                ),
            ],
        ),
    ]

"""Its links to merchants and programs now point to the ``merchants`` app: state only, the
columns and constraints do not change."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('merchants', '0001_initial'),
        ('promoters', '0004_promoter_rate_history'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='promoter',
                    name='merchant',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='promoters', to='merchants.merchant'),
                ),
                migrations.AlterField(
                    model_name='promoter',
                    name='program',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='promoters', to='merchants.program'),
                ),
                migrations.DeleteModel(
                    name='MerchantMember',
                ),
            ],
        ),
    ]

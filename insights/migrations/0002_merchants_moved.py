"""Its links to merchants and programs now point to the ``merchants`` app: state only, the
columns and constraints do not change."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('insights', '0001_initial'),
        ('merchants', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='content',
                    name='merchant',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='contents', to='merchants.merchant'),
                ),
                migrations.AlterField(
                    model_name='insightrun',
                    name='merchant',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='insight_runs', to='merchants.merchant'),
                ),
                migrations.AlterField(
                    model_name='material',
                    name='merchant',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='materials', to='merchants.merchant'),
                ),
                migrations.AlterField(
                    model_name='product',
                    name='merchant',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='products', to='merchants.merchant'),
                ),
                migrations.AlterField(
                    model_name='ratechange',
                    name='program',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='rate_changes', to='merchants.program'),
                ),
                migrations.AlterField(
                    model_name='raterule',
                    name='program',
                    field=models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='rate_rule', to='merchants.program'),
                ),
                migrations.AlterField(
                    model_name='segmentmodel',
                    name='merchant',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='segment_models', to='merchants.merchant'),
                ),
                migrations.AlterField(
                    model_name='segmentplan',
                    name='merchant',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='segment_plans', to='merchants.merchant'),
                ),
            ],
        ),
    ]

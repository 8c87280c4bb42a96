"""Merchants, programs and merchant members move here from ``affiliate`` and ``promoters``.

State only: the tables keep their names (``affiliate_merchant``, ``affiliate_program``,
``promoters_merchantmember``) and their rows; the content types follow the models, so the
admin's history and the permissions given to groups stay attached.
"""

import core.crypto
import django.core.validators
import django.db.models.deletion
import django.utils.timezone
import merchants.models
from decimal import Decimal
from django.conf import settings
from django.db import migrations, models


MOVED = {("affiliate", "merchant"), ("affiliate", "program"), ("promoters", "merchantmember")}


def content_types_follow(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for app_label, model in MOVED:
        if not ContentType.objects.filter(app_label="merchants", model=model).exists():
            ContentType.objects.filter(app_label=app_label, model=model).update(app_label="merchants")


def content_types_return(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for app_label, model in MOVED:
        if not ContentType.objects.filter(app_label=app_label, model=model).exists():
            ContentType.objects.filter(app_label="merchants", model=model).update(app_label=app_label)


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ('affiliate', '0013_encrypted_secrets'),
        ('promoters', '0004_promoter_rate_history'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='Merchant',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=200)),
                        ('domains', models.JSONField(default=list, help_text='Hosts that referral links may point to (subdomains included).')),
                        ('api_key_hash', models.CharField(editable=False, max_length=64, unique=True)),
                        ('api_key_prefix', models.CharField(editable=False, help_text="The key's first characters, to recognise it.", max_length=16)),
                        ('postback_token_hash', models.CharField(editable=False, max_length=64, unique=True)),
                        ('postback_secret', core.crypto.EncryptedTextField(editable=False, help_text='The HMAC key of signed postbacks: read back in clear to verify them, stored encrypted.')),
                        ('require_signature', models.BooleanField(default=False)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                    ],
                    options={
                        'db_table': 'affiliate_merchant',
                        'ordering': ['id'],
                    },
                ),
                migrations.CreateModel(
                    name='MerchantMember',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('role', models.CharField(choices=[('owner', 'Owner'), ('staff', 'Staff')], default='staff', max_length=10)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                        ('merchant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='members', to='merchants.merchant')),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='merchant_memberships', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'promoters_merchantmember',
                        'ordering': ['id'],
                        'constraints': [models.UniqueConstraint(fields=('user', 'merchant'), name='merchant_member_once'), models.CheckConstraint(condition=models.Q(('role__in', ['owner', 'staff'])), name='merchant_member_role_valid')],
                    },
                ),
                migrations.CreateModel(
                    name='Program',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=200)),
                        ('is_default', models.BooleanField(default=False, editable=False)),
                        ('currency', models.CharField(default='USD', max_length=3)),
                        ('attribution_model', models.CharField(choices=[('first_click', 'First Click'), ('last_click', 'Last Click'), ('mixed', 'Mixed'), ('linear', 'Linear'), ('time_decay', 'Time Decay')], default='mixed', max_length=16)),
                        ('first_click_share', models.DecimalField(decimal_places=6, default=Decimal('0.60'), max_digits=7, validators=[django.core.validators.MinValueValidator(Decimal('0')), django.core.validators.MaxValueValidator(Decimal('1'))])),
                        ('last_click_share', models.DecimalField(decimal_places=6, default=Decimal('0.40'), max_digits=7, validators=[django.core.validators.MinValueValidator(Decimal('0')), django.core.validators.MaxValueValidator(Decimal('1'))])),
                        ('lookback_days', models.PositiveIntegerField(default=30, validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(3650)])),
                        ('registration_bounty_minor', models.BigIntegerField(default=0)),
                        ('first_purchase_rate', models.DecimalField(decimal_places=6, default=Decimal('0.10'), max_digits=7, validators=[django.core.validators.MinValueValidator(Decimal('0')), django.core.validators.MaxValueValidator(Decimal('1'))])),
                        ('repeat_purchase_rate', models.DecimalField(decimal_places=6, default=Decimal('0.05'), max_digits=7, validators=[django.core.validators.MinValueValidator(Decimal('0')), django.core.validators.MaxValueValidator(Decimal('1'))])),
                        ('tier_rates', models.JSONField(default=merchants.models.default_tier_rates, help_text='Override rates for upline levels 1..N (N ≤ 10), as strings.')),
                        ('compress_inactive', models.BooleanField(default=False)),
                        ('duplicate_click_seconds', models.PositiveIntegerField(default=0)),
                        ('hold_days', models.PositiveIntegerField(default=30)),
                        ('fraud', models.JSONField(default=merchants.models.default_fraud_rules, help_text='The fraud rules: bots, click_flood_max, click_flood_seconds, self_referral_email, min_click_to_conversion_seconds, ip_max_promoters, max_order_amount (0 or null: off).')),
                        ('join_requires_approval', models.BooleanField(default=False, help_text="Promoters who sign up through an invite link wait for the merchant's approval (and earn nothing until then) instead of joining at once.")),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('merchant', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='programs', to='merchants.merchant')),
                    ],
                    options={
                        'db_table': 'affiliate_program',
                        'ordering': ['id'],
                        'constraints': [models.UniqueConstraint(condition=models.Q(('is_default', True)), fields=('merchant',), name='one_default_program_per_merchant'), models.CheckConstraint(condition=models.Q(('registration_bounty_minor__gte', 0)), name='program_bounty_not_negative'), models.CheckConstraint(condition=models.Q(('first_click_share__gte', 0), ('first_click_share__lte', 1), ('last_click_share__gte', 0), ('last_click_share__lte', 1)), name='program_shares_in_range'), models.CheckConstraint(condition=models.Q(('first_purchase_rate__gte', 0), ('first_purchase_rate__lte', 1), ('repeat_purchase_rate__gte', 0), ('repeat_purchase_rate__lte', 1)), name='program_rates_in_range')],
                    },
                ),
            ],
        ),
        migrations.RunPython(content_types_follow, content_types_return),
    ]

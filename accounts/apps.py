"""App configuration for accounts."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Tenants and credentials"
    default_auto_field = "django.db.models.BigAutoField"

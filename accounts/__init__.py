"""Tenants, their staff memberships, API keys, connection-token signing keys and end users."""

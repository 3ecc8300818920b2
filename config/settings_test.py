"""Settings for the test suite: the real settings, with test-only defaults for values the
environment would otherwise have to provide, and fast password hashing."""

import os

os.environ.setdefault("SECRET_KEY", "test-suite-only-secret-key-never-used-in-a-deployment-0123456789")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("HERALD_FANOUT_SWEEP_SECONDS", "0.2")

from config.settings import *  # noqa: F403

# Hashing demo passwords with PBKDF2's 1M iterations would dominate test time.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not Django's default in-memory test database: in-memory SQLite shared between
    # threads locks whole tables (fan-out runs in its own thread), while a file in WAL mode
    # behaves like the embedded default does in production.
    import tempfile

    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(tempfile.gettempdir(), f"herald-test-{os.getpid()}.sqlite3")
    }

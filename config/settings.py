"""Django settings for Herald. Every value that varies between deployments is read from the
environment here, and only here (see the configuration table in README.md)."""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_choice, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("HERALD_VAR_DIR") or BASE_DIR / "var")

# --- Core Django -------------------------------------------------------------------------------
# DEBUG is off unless asked for: a forgotten variable must never expose tracebacks in production.
DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it to a long random string (for example the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`), or set DEBUG=1 for a "
            "local development run."
        )
    SECRET_KEY = "herald-insecure-development-key-only-used-when-DEBUG-is-on-0123456789"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "accounts",
    "notifications",
    "dashboard",
]

MIDDLEWARE = [
    "config.middleware.HealthCheckMiddleware",
    "config.middleware.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ----------------------------------------------------------------------------------
# Embedded default: one SQLite file under var/. Production: DATABASE_URL=postgres://...
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'herald.sqlite3'}"
try:
    _database = dj_database_url.parse(DATABASE_URL)
except ValueError as error:
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {error}") from None
if _database["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run while the fan-out writes; IMMEDIATE transactions take the write lock
    # up front so concurrent writers queue (for up to `timeout` seconds) instead of failing with
    # "database is locked" half-way through a transaction.
    _database["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif _database["ENGINE"] == "django.db.backends.postgresql":
    # A connection pool per process: ASGI runs sync code in many threads, and opening a
    # PostgreSQL connection per request costs more than the request itself.
    _database["CONN_MAX_AGE"] = 0
    _database["OPTIONS"] = {
        "pool": {
            "min_size": env_int("HERALD_DB_POOL_MIN", 2, minimum=0),
            "max_size": env_int("HERALD_DB_POOL_MAX", 20, minimum=1),
            # A request waits at most 5 s for a pooled connection, then answers 503.
            "timeout": 5,
        },
        "connect_timeout": 5,
    }
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer, cache and connection counts --------------------------------------------
REDIS_URL = env_str("REDIS_URL")
REDIS_PREFIX = env_str("HERALD_REDIS_PREFIX", "herald")
CHANNEL_LAYER_KIND = env_choice("HERALD_CHANNEL_LAYER", "core", ("core", "pubsub"))
# High availability: with Sentinel, REDIS_URL still gives the database number and password
# (redis://:password@unused/0) and the sentinels name the master.
REDIS_SENTINELS = [
    (host, int(port)) for host, _, port in (item.rpartition(":") for item in env_list("HERALD_REDIS_SENTINELS", []))
]
REDIS_SENTINEL_MASTER = env_str("HERALD_REDIS_SENTINEL_MASTER", "herald")
if REDIS_SENTINELS and not REDIS_URL:
    raise ImproperlyConfigured("HERALD_REDIS_SENTINELS needs REDIS_URL too (for the db number and password).")
# Every Redis connection's read timeout. It must exceed the channel layer's 5 s blocking receive
# (BZPOPMIN), or an idle node would take its own quiet wait for a Redis outage.
REDIS_SOCKET_TIMEOUT = 15


def _redis_host() -> dict[str, object]:
    """channels-redis host entry for REDIS_URL, or for the Sentinel-named master."""
    from urllib.parse import urlsplit

    options: dict[str, object] = {"socket_timeout": REDIS_SOCKET_TIMEOUT, "socket_connect_timeout": 5}
    if not REDIS_SENTINELS:
        return {"address": REDIS_URL, **options}
    parts = urlsplit(REDIS_URL)
    return {
        "sentinels": REDIS_SENTINELS,
        "master_name": REDIS_SENTINEL_MASTER,
        "db": int(parts.path.lstrip("/") or 0),
        "password": parts.password,
        "sentinel_kwargs": {"socket_timeout": 0.5},
        **options,
    }


if REDIS_URL:
    if CHANNEL_LAYER_KIND == "pubsub":
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [_redis_host()], "prefix": REDIS_PREFIX},
            }
        }
    else:
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {
                    "hosts": [_redis_host()],
                    "prefix": REDIS_PREFIX,
                    # Group memberships are refreshed by every node every 5 minutes, so a node that
                    # died stops receiving (and wasting) group messages after at most 15 minutes.
                    "group_expiry": 900,
                    # Each node receives every live frame on ONE channel (see notifications/hub.py),
                    # so that channel needs room for bursts; the database stays the source of truth
                    # for anything the layer drops.
                    "capacity": 100,
                    "channel_capacity": {"herald-node*": 20000, "herald-fanout*": 10000},
                    "expiry": 30,
                },
            }
        }
    _cache_options: dict[str, object] = {"socket_timeout": REDIS_SOCKET_TIMEOUT, "socket_connect_timeout": 5}
    if REDIS_SENTINELS:
        from redis.sentinel import Sentinel

        _cache_options.update(
            pool_class="redis.sentinel.SentinelConnectionPool",
            service_name=REDIS_SENTINEL_MASTER,
            sentinel_manager=Sentinel(REDIS_SENTINELS, socket_timeout=0.5),
        )
    CACHES = {
        "default": {
            "BACKEND": "config.cache.SharedRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": REDIS_PREFIX,
            "OPTIONS": _cache_options,
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            # Only the hub's node channel and the fan-out wake-up channel exist in this layer
            # (consumers have no channel of their own), so one generous capacity fits both.
            # (InMemoryChannelLayer in channels 4.3 ignores `channel_capacity` patterns anyway.)
            "CONFIG": {"capacity": 20000},
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "herald"}}

# --- Auth, sessions, security ------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "dashboard:login"

# Herald is meant to run behind a TLS-terminating proxy (nginx.conf). When it is not in DEBUG,
# every cookie is secure, HSTS is on and plain HTTP is redirected. Each can be switched off for a
# plain-HTTP test server on loopback.
_production = not DEBUG
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("HERALD_TRUST_X_FORWARDED_PROTO", _production) else None
)
USE_X_FORWARDED_HOST = False
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", _production)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", _production)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", _production)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if _production else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _production
# Sending `preload` alone submits nothing; it lets the operator submit the domain to browsers' lists.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", _production)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Largest request body Django reads (a batch of 100 events of a few KB each fits comfortably).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("HERALD_MAX_REQUEST_BYTES", 4 * 1024 * 1024, minimum=1024)

# --- Internationalisation and static files -------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT") or BASE_DIR / "staticfiles")
# Browser packages installed from npm by scripts/bootstrap (package.json), served as static files
# under their package name: /static/uplot/uPlot.iife.min.js draws the operations page's charts.
STATICFILES_DIRS = [("uplot", BASE_DIR / "node_modules" / "uplot" / "dist")]
# In the embedded default Herald serves its own static files; behind nginx, nginx does.
HERALD_SERVE_STATIC = env_bool("HERALD_SERVE_STATIC", DEBUG)

# --- CORS: only the end-user inbox endpoints, which authenticate with a bearer connection token
# (never a cookie), may be called from other sites: a tenant's own front end. API-key endpoints
# answer no CORS at all, so a browser page cannot use an API key. A tenant can still restrict
# which sites may use its tokens (Tenant.allowed_origins, checked by IsEndUser).
CORS_URLS_REGEX = r"^/api/v1/inbox(/.*)?$"
CORS_ALLOW_ALL_ORIGINS = True
CORS_ALLOW_CREDENTIALS = False
CORS_PREFLIGHT_MAX_AGE = 86400

# --- REST API ----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.BearerAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["config.parsers.StrictJSONParser"],
    "EXCEPTION_HANDLER": "config.exception_handler.herald_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    # One timestamp format everywhere (notifications/protocol.py `timestamp`): UTC, microseconds, Z.
    "DATETIME_FORMAT": "%Y-%m-%dT%H:%M:%S.%fZ",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Herald API",
    "DESCRIPTION": (
        "Publish notifications, mint connection tokens, manage topics and subscriptions (API key "
        "bearer), and read an end user's inbox (connection token bearer). The WebSocket protocol is "
        "described in docs/protocol.md."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {},
}

# --- Herald's own settings (defaults and validation: config/herald.py) ----------------------------
HERALD = {
    "FANOUT_MODE": env_choice("HERALD_FANOUT_MODE", "inprocess", ("inprocess", "worker")),
    "SERVER": env_choice("HERALD_SERVER", "uvicorn", ("uvicorn", "daphne")),
    "FANOUT_BATCH_SIZE": env_int("HERALD_FANOUT_BATCH_SIZE", 1000, minimum=1),
    "FANOUT_SWEEP_SECONDS": env_float("HERALD_FANOUT_SWEEP_SECONDS", 1.0, minimum=0.05),
    "HEARTBEAT_SECONDS": env_float("HERALD_HEARTBEAT_SECONDS", 25.0, minimum=0.1),
    "AUTH_TIMEOUT_SECONDS": env_float("HERALD_AUTH_TIMEOUT_SECONDS", 5.0, minimum=0.1),
    "TOKEN_MAX_LIFETIME_SECONDS": env_int("HERALD_TOKEN_MAX_LIFETIME_SECONDS", 86400, minimum=60),
    "TOKEN_DEFAULT_LIFETIME_SECONDS": env_int("HERALD_TOKEN_DEFAULT_LIFETIME_SECONDS", 900, minimum=60),
    "REPLAY_MAX": env_int("HERALD_REPLAY_MAX", 1000, minimum=1),
    "ALLOWED_ORIGINS": env_list("HERALD_ALLOWED_ORIGINS", []),
    "METRICS_TOKEN": env_str("HERALD_METRICS_TOKEN"),
    "PRESENCE_NODE_TTL_SECONDS": env_int("HERALD_PRESENCE_NODE_TTL_SECONDS", 30, minimum=1),
    "TOKENS_PER_IP_PER_MINUTE": env_int("HERALD_TOKENS_PER_IP_PER_MINUTE", 1200, minimum=1),
    "AUTH_FAILURES_PER_IP_PER_MINUTE": env_int("HERALD_AUTH_FAILURES_PER_IP_PER_MINUTE", 30, minimum=1),
    "MAX_CLIENT_FRAME_BYTES": env_int("HERALD_MAX_CLIENT_FRAME_BYTES", 65536, minimum=1024),
    "MAX_OUTBOUND_BYTES": env_int("HERALD_MAX_OUTBOUND_BYTES", 512 * 1024, minimum=16 * 1024),
    "SOCKET_SEND_BUFFER_BYTES": env_int("HERALD_SOCKET_SEND_BUFFER_BYTES", 64 * 1024, minimum=0),
    "WS_COMPRESSION": env_bool("HERALD_WS_COMPRESSION", False),
}

# --- Logging: one JSON object per line on stderr; never a secret (config/logging.py) ------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "config.logging.JsonFormatter"}},
    "filters": {"client_mistakes": {"()": "config.logging.ClientMistakeFilter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["client_mistakes"]}},
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own default handlers would print each request error a second time, unformatted.
        "django": {"handlers": ["stderr"], "level": LOG_LEVEL, "propagate": False},
        "django.server": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        # 4xx answers are already in herald.request's line; Django's own would repeat them.
        "django.request": {"handlers": ["stderr"], "level": "ERROR", "propagate": False},
        "daphne": {"level": "WARNING"},
        "asyncio": {"level": "WARNING"},
    },
}

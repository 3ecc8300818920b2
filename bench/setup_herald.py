"""Prepare Herald's benchmark database before the server starts: the `bench` tenant, its `bench`
topic, a fresh API key and a file of connection tokens (token i = end user `u<i>`).

    DATABASE_URL=postgres://... python bench/setup_herald.py --tokens 10000 --state-dir DIR

Prints shell assignments (BENCH_API_KEY=..., BENCH_TOKENS_FILE=...) for peers/herald/peer.sh to
`eval`. Runs with Herald's own settings, so it needs the same DATABASE_URL as the server; it uses no
Redis. Idempotent: the tenant and topic are reused, events of earlier runs are deleted (so every run
starts from the same database size), older bench API keys are revoked, and the token file is reused
while it is fresh and long enough.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TENANT_SLUG = "bench"
TOPIC_KEY = "bench"
# Tokens are minted for the longest lifetime Herald allows (24 h by default) and re-minted once
# they are 12 h old, so a token never expires during a run sequence.
TOKEN_REUSE_SECONDS = 12 * 3600
# End users are created in chunks: one bulk insert and one select per 1,000 ids.
CHUNK = 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=10000, help="connection tokens needed (users u0..uN-1)")
    parser.add_argument("--state-dir", required=True, help="where the token file and state are kept")
    parser.add_argument("--keep-events", action="store_true", help="do not delete events of earlier runs")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.pop("REDIS_URL", None)  # the setup needs only the database
    import django

    django.setup()

    from django.core.management import call_command
    from django.db import transaction

    from accounts.models import ApiKey, Tenant
    from accounts.services import api_key_create, end_users_ensure, signing_key_current, tenant_create
    from accounts.tokens import token_encode
    from config.herald import herald_settings
    from notifications.models import Event, FanoutJob, IdempotencyRecord, Topic
    from notifications.services import topic_create

    started = time.monotonic()
    call_command("migrate", verbosity=0)
    # Limits high enough that the benchmark measures delivery, not the tenant's quotas.
    limits = {
        "publishes_per_minute": 1_000_000_000,
        "key_publishes_per_minute": 1_000_000_000,
        "max_connections": 1_000_000,
    }
    tenant = Tenant.objects.filter(slug=TENANT_SLUG).first()
    if tenant is None:
        tenant = tenant_create(slug=TENANT_SLUG, name="Benchmark", **limits)
    else:
        Tenant.objects.filter(pk=tenant.pk).update(is_active=True, **limits)
    if not Topic.objects.filter(tenant=tenant, key=TOPIC_KEY).exists():
        topic_create(tenant=tenant, key=TOPIC_KEY, name="Benchmark", allow_client_subscribe=True)

    if not args.keep_events:
        with transaction.atomic():
            FanoutJob.objects.filter(tenant=tenant).delete()
            IdempotencyRecord.objects.filter(tenant=tenant).delete()
            deleted, _ = Event.objects.filter(tenant=tenant).delete()
    else:
        deleted = 0

    ApiKey.objects.filter(tenant=tenant, revoked_at__isnull=True).update(revoked_at=django_now())
    _, api_key = api_key_create(tenant=tenant, name="bench", scopes=["publish", "read", "admin"])

    state_dir = Path(args.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    tokens_file = state_dir / "tokens.txt"
    meta_file = state_dir / "tokens.json"
    signing_key = signing_key_current(tenant=tenant)
    meta = _read_json(meta_file)
    fresh = (
        tokens_file.exists()
        and meta.get("kid") == signing_key.kid
        and meta.get("count", 0) >= args.tokens
        and time.time() - meta.get("minted_at", 0) < TOKEN_REUSE_SECONDS
    )
    if not fresh:
        count = max(args.tokens, int(meta.get("count", 0)))
        lifetime = timedelta(seconds=herald_settings.TOKEN_MAX_LIFETIME_SECONDS)
        tokens: list[str] = []
        for start in range(0, count, CHUNK):
            user_ids = [f"u{index}" for index in range(start, min(count, start + CHUNK))]
            end_users_ensure(tenant=tenant, external_ids=user_ids)
            for user_id in user_ids:
                token, _ = token_encode(signing_key=signing_key, user_id=user_id, lifetime=lifetime, topics=[TOPIC_KEY])
                tokens.append(token)
        tmp = tokens_file.with_suffix(".tmp")
        tmp.write_text("\n".join(tokens) + "\n")
        tmp.replace(tokens_file)
        meta = {"kid": signing_key.kid, "count": count, "minted_at": time.time()}
        meta_file.write_text(json.dumps(meta))

    print(
        f"[setup_herald] tenant={TENANT_SLUG} topic={TOPIC_KEY} deleted_rows={deleted} "
        f"tokens={meta['count']} ({'reused' if fresh else 'minted'}) in {time.monotonic() - started:.1f}s",
        file=sys.stderr,
    )
    print(f"BENCH_API_KEY={shlex.quote(api_key)}")
    print(f"BENCH_TOKENS_FILE={shlex.quote(str(tokens_file))}")
    return 0


def django_now():  # type: ignore[no-untyped-def]
    from django.utils import timezone

    return timezone.now()


def _read_json(path: Path) -> dict:  # type: ignore[type-arg]
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


if __name__ == "__main__":
    sys.exit(main())

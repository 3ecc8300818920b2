"""Deployment tooling (standard library only): render nginx.conf, make TLS material, run the local
production layout (`make cluster`). Used by scripts/cluster and by the integration tests."""

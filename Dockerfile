# villagebot: the bot, its back office and the `villagebot` command, on Python 3.11.
# Build: docker build -t villagebot .    Run: see docker-compose.yml and the README's "Production".
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The process runs as this user; its home is the working directory, the one writable place
# (WEB_FILES's default data/files, and matplotlib's cache, land there).
RUN useradd --system --user-group --uid 10001 --create-home --home-dir /var/lib/villagebot \
        --shell /usr/sbin/nologin villagebot

WORKDIR /opt/villagebot

# The runtime dependencies first, read from pyproject.toml (no dev or bench extras), so that
# a change of the code does not install them again.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The code with its migrations (bot/migrations), the catalogs and the example directory.
COPY bot ./bot
COPY scheduler ./scheduler
COPY web ./web
COPY locales ./locales
COPY examples ./examples

# Installed in place: bot.i18n reads locales/ and the sandbox examples/ beside the packages.
# The .po catalogs are compiled in memory at every start (no .mo to build); compiling them
# once here fails the build, not the start, when one is broken.
RUN pip install --no-deps --editable . \
    && python -m compileall -q bot scheduler web \
    && python -c "from bot.i18n import catalogs; catalogs()"

USER villagebot
WORKDIR /var/lib/villagebot

# Inside a container the server listens on every interface; the published port decides who
# reaches it.
ENV WEB_LISTEN=0.0.0.0:8080
EXPOSE 8080

# Slim has no curl: Python's urllib asks /healthz on WEB_LISTEN's port; any error or non-2xx
# answer exits non-zero.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('WEB_LISTEN', '').rpartition(':')[2] or '8080'; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

ENTRYPOINT ["villagebot"]
CMD ["run"]

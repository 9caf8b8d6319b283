# CPU-only image of the skin-care assistant (web chat + Telegram when a token is set).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    SKINCARE_WEB_HOST=0.0.0.0 \
    SKINCARE_WEB_PORT=8080 \
    SKINCARE_DB=/data/skincare.sqlite3

WORKDIR /app

# CPU wheels of the pinned torch: the default PyPI wheels carry CUDA (several GB).
RUN pip install --index-url https://download.pytorch.org/whl/cpu \
        torch==2.14.1 torchvision==0.29.1

COPY pyproject.toml README.md ./
COPY bot ./bot
COPY diagnosis ./diagnosis
COPY knowledge ./knowledge
COPY templates ./templates
# The bundled model (diagnosis/bundled/) comes with the diagnosis package. An editable install
# keeps templates/ beside the code, where the assistant looks for them.
RUN pip install -e . \
    && useradd --system --uid 10001 --home-dir /app skincare \
    && mkdir -p /data && chown skincare /data

USER skincare
VOLUME ["/data"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SKINCARE_WEB_PORT', '8080'), timeout=4)"

CMD ["python", "-m", "bot"]

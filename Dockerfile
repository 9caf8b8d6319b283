# CPU-only image of the skin-care assistant (web chat + Telegram when a token is set).
# The serving install only: the model runs on ONNX Runtime, so no torch (nor CUDA) in the image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    SKINCARE_WEB_HOST=0.0.0.0 \
    SKINCARE_WEB_PORT=8080 \
    SKINCARE_DB=/data/skincare.sqlite3

WORKDIR /app

COPY pyproject.toml README.md ./
COPY bot ./bot
COPY diagnosis ./diagnosis
COPY envconfig ./envconfig
COPY knowledge ./knowledge
# The bundled model (diagnosis/bundled/) and the reply templates (bot/templates/) are package
# data: a plain install carries them.
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app skincare \
    && mkdir -p /data && chown skincare /data

USER skincare
VOLUME ["/data"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SKINCARE_WEB_PORT', '8080'), timeout=4)"

CMD ["python", "-m", "bot"]

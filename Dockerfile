# The arena as a container: Python 3.12 slim, non-root user 1000, port 7860, data under the /data volume.
#   docker build -t llm-arena . && docker run -p 7860:7860 -v arena-data:/data -e BREEZE_URL=... llm-arena
# PYTHON_IMAGE: CI builds on a locally made Debian bookworm + CPython 3.12 image (.ci/docker-env).
ARG PYTHON_IMAGE=python:3.12-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    HF_HOME=/data/hf \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    DATABASE_URL=sqlite:////data/arena.sqlite3 \
    ARENA_JOURNAL_DIR=/data/sync

RUN useradd --create-home --uid 1000 arena && mkdir -p /data && chown arena:arena /data
WORKDIR /app
# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt .
RUN pip install -r requirements.txt

# Everything about how the container runs comes before the code, so a code change rebuilds only
# the last layer.
USER arena
VOLUME ["/data"]
EXPOSE 7860
# Gradio answers /config once the app is up; the probe is Python so the image needs no curl, and it
# asks the port the app listens on (GRADIO_SERVER_PORT, which `docker run -e` may change).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/config' % os.environ.get('GRADIO_SERVER_PORT', '7860'), timeout=4)"]
# Exec form: the app is PID 1 and gets SIGTERM on `docker stop`, flushing its journal before exit.
CMD ["python", "app.py"]

# The code, owned by root (COPY ignores USER) and so read-only to the app user; only /data is
# writable. .dockerignore keeps secrets (.env), tests and local state out.
COPY . .

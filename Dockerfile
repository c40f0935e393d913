# layoutray on Ray's official image: Ray 2.60.0, Python 3.11, non-root user `ray`.
#
#   docker build -t layoutray:cpu .                                   # CPU (serving, head nodes)
#   docker build --build-arg RAY_VARIANT=gpu -t layoutray:gpu .       # CUDA (training workers)
#   docker run -p 8080:8080 -v $PWD/runs/quickstart/model:/models/v1:ro \
#       -e LAYOUTRAY_STABLE_MODEL=/models/v1 -e LAYOUTRAY_CANARY_MODEL=/models/v1 layoutray:cpu
#
# RAY_VARIANT picks the base tag rayproject/ray:<RAY_VERSION>-py311-<RAY_VARIANT>: "cpu", "gpu"
# (Ray's alias for its default CUDA build) or an explicit "cuXXX" tag of that Ray release.
# The project is installed by the one install recipe, scripts/install.sh, into the image's
# Python (VENV=none): the same commands as `make setup`, not a second recipe (it also installs
# Debian's nginx, the proxy in front of Serve, with the base image's sudo). For the CPU
# variant the PyTorch CPU wheel index is added so that torch==2.13.0 resolves to the +cpu build
# instead of the multi-GB CUDA one; the GPU variant gets the default (CUDA) wheel from PyPI.
# Checked statically by tests/cluster/test_docker.py (Docker does not run on the dev machines).
ARG RAY_VERSION=2.60.0
ARG RAY_VARIANT=cpu
FROM rayproject/ray:${RAY_VERSION}-py311-${RAY_VARIANT}

ARG RAY_VERSION
ARG RAY_VARIANT
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

# The base image's user (uid 1000, group users); it owns the image's Python environment, so the
# install needs no root. Never switch to root for the project.
USER ray
WORKDIR /home/ray/layoutray

# .dockerignore keeps .venv, runs, sections, .git and caches out of the build context.
COPY --chown=ray:users . .

RUN set -eux; \
    if [ "$RAY_VARIANT" = cpu ]; then export PIP_EXTRA_INDEX_URL="$TORCH_CPU_INDEX"; fi; \
    VENV=none bash scripts/install.sh; \
    python -c "import ray, torch, deepspeed, layoutray, trainables, serving; \
assert ray.__version__ == '$RAY_VERSION', ray.__version__; print('torch', torch.__version__)"; \
    rm -rf ~/.cache/pip

ENV PYTHONUNBUFFERED=1
# 8080 nginx in front of Serve (deploy/nginx/nginx.conf; Serve itself listens on 127.0.0.1:8000
# inside the container), 8265 Ray dashboard / job submission.
EXPOSE 8080 8265

# Default: nginx on all interfaces of the container, in front of `serve run configs/serve.yaml`.
# Cluster nodes override the command (the launcher runs `ray start`, KubeRay sets its own).
CMD ["bash", "cluster/serve-container.sh", "configs/serve.yaml"]

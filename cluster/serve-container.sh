#!/usr/bin/env bash
# The Docker image's default command: nginx on every interface of the container (port 8080,
# deploy/nginx/nginx.conf) in front of `serve run` of a Serve config file (default
# configs/serve.yaml), whose HTTP proxy stays on 127.0.0.1 inside the container.
#
# Clients reach the app only through nginx, which absorbs slow and stalled clients (timeouts,
# connection limits; docs/serving.md, "Proxy"). Model artifacts: mount them and set
# LAYOUTRAY_STABLE_MODEL / LAYOUTRAY_CANARY_MODEL (see configs/serve.yaml), e.g.
#   docker run -p 8080:8080 -v $PWD/runs/quickstart/model:/models/v1:ro \
#       -e LAYOUTRAY_STABLE_MODEL=/models/v1 -e LAYOUTRAY_CANARY_MODEL=/models/v1 layoutray:cpu
set -euo pipefail
CONFIG=${1:-configs/serve.yaml}
PROXY_PORT=${LAYOUTRAY_PROXY_PORT:-8080}
SERVE_PORT=$(python -c 'import sys, yaml; print((yaml.safe_load(open(sys.argv[1])).get("http_options") or {}).get("port", 8000))' "$CONFIG")
python -m serving.proxy --listen "$PROXY_PORT" --upstream "127.0.0.1:$SERVE_PORT" --prefix /tmp/layoutray-nginx &
NGINX_PID=$!
trap 'kill "$NGINX_PID" 2>/dev/null || true' EXIT
serve run "$CONFIG"

#!/usr/bin/env bash
# The Docker image's default command: `serve run` of a Serve config file (default
# configs/serve.yaml), listening on every interface of the container.
#
# configs/serve.yaml binds the HTTP proxy to 127.0.0.1, right for a laptop and unreachable from
# outside a container; this writes a copy with http_options.host = 0.0.0.0 (port unchanged) and
# runs that. Model artifacts: mount them and set LAYOUTRAY_STABLE_MODEL / LAYOUTRAY_CANARY_MODEL
# (see configs/serve.yaml), e.g.
#   docker run -p 8000:8000 -v $PWD/runs/quickstart/model:/models/v1:ro \
#       -e LAYOUTRAY_STABLE_MODEL=/models/v1 -e LAYOUTRAY_CANARY_MODEL=/models/v1 layoutray:cpu
set -euo pipefail
CONFIG=${1:-configs/serve.yaml}
OUT=${LAYOUTRAY_CONTAINER_SERVE_CONFIG:-/tmp/layoutray-serve.yaml}
python - "$CONFIG" "$OUT" <<'PY'
import sys, yaml
src, out = sys.argv[1], sys.argv[2]
cfg = yaml.safe_load(open(src))
cfg.setdefault("http_options", {})["host"] = "0.0.0.0"
with open(out, "w") as f:
    yaml.safe_dump(cfg, f, sort_keys=False)
PY
exec serve run "$OUT"

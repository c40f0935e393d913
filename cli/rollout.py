"""`layoutray rollout ...`: drive a canary rollout on a running Serve app over its admin API."""

from __future__ import annotations

from serving import client


def add_parser(top) -> None:
    ro = top.add_parser("rollout", help="canary rollout of a new model version").add_subparsers(
        dest="sub", metavar="SUB", required=True)
    p = ro.add_parser("start", help="start a canary rollout")
    p.set_defaults(func=client.cmd_start)
    p.add_argument("--canary", required=True, metavar="MODEL_DIR|URI|models:/NAME@ALIAS",
                   help="the new model: a directory on the serving host, a URI (s3://bucket/models/v2) or an MLflow "
                        "registry version (models:/NAME@ALIAS, models:/NAME/VERSION; a promotion moves the alias "
                        "of the stable model to it)")
    p.add_argument("--steps", default="10,25,50,100")
    p.add_argument("--interval", type=float, default=60.0, metavar="SECONDS")
    p.add_argument("--min-requests", type=int, default=50)
    p.add_argument("--max-error-rate", type=float, default=0.05)
    p.add_argument("--max-p95-ms", type=float, default=2000.0)
    for name, help_ in (("status", "show the rollout state and its decisions"), ("pause", "hold the current step"),
                        ("resume", "continue a paused rollout"), ("promote", "make the canary the stable version"),
                        ("rollback", "send all traffic back to the stable version")):
        ro.add_parser(name, help=help_).set_defaults(func=getattr(client, f"cmd_{name}"))
    for p in ro.choices.values():
        p.add_argument("--url", default="http://127.0.0.1:8000", help="the Serve HTTP address")
        p.add_argument("--json", action="store_true")

"""`python -m trainables.evaluate --model DIR --data DIR [--split test] [--json]`: the same as
`layoutray evaluate`, as a module so that `ray job submit ... -- python -m trainables.evaluate`
works with the cluster's Python (cluster/README.md)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from cli.main import main as cli_main
    return cli_main(["evaluate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())

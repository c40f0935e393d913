"""Keep a benchmark's stdout for its JSON document alone.

Ray's raylet, Ray Train and Serve write warnings to file descriptor 1 from threads and child
processes (even with log_to_driver=False), which would break `python bench/x.py > x.json`.
"""

from __future__ import annotations

import json
import os


def reserve_stdout():
    """Point fd 1 at stderr for the rest of the process; return a file on the original stdout."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return out


def emit(out, doc: dict) -> str:
    """Write `doc` as indented JSON to `out`; return the text written."""
    text = json.dumps(doc, indent=2) + "\n"
    out.write(text)
    out.flush()
    return text

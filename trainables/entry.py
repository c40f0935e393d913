"""What every command-line entry point shares: user errors become one line on stderr and exit
code 2, never a traceback. Used by the `layoutray` command (cli/) and by the
`python -m trainables.*` modules that `ray job submit` runs."""

from __future__ import annotations

import argparse
import sys
from typing import Callable


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message already names the file, key or field."""
    from layoutray.config import ConfigError
    from layoutray.data.dataset import DatasetError
    from layoutray.model.request import ApiError
    from layoutray.storage import StorageError

    errors: tuple[type[BaseException], ...] = (ConfigError, DatasetError, ApiError, StorageError)
    artifact = sys.modules.get("layoutray.model.artifact")  # imports torch: only if already loaded
    return errors + ((artifact.ArtifactError,) if artifact else ())


def run_command(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    try:
        return int(func(args) or 0)
    except BrokenPipeError:  # `layoutray ... | head` closed the pipe: not an error
        sys.stderr.close()
        return 0
    except Exception as e:
        if not isinstance(e, user_errors()):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


def module_main(prog: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                func: Callable[[argparse.Namespace], int | None], argv: list[str] | None = None) -> int:
    """`python -m trainables.X ARGS`: the same arguments and behaviour as `layoutray X ARGS`."""
    parser = argparse.ArgumentParser(prog=prog)
    add_arguments(parser)
    return run_command(func, parser.parse_args(sys.argv[1:] if argv is None else argv))


def add_tracking(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking", metavar="tensorboard|mlflow[:URI]",
                   help="also log to an MLflow tracking server (URI, else MLFLOW_TRACKING_URI; docs/tracking.md); "
                        "metrics.jsonl and TensorBoard are always written")


def add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value by its dotted key, e.g. --set training.epochs=5 (repeatable)")

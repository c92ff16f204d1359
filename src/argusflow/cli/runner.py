"""How every program ends: one line per error, the Argus exit codes, no traceback unless -D."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from argusflow.errors import ArgusflowError

EXIT_MATCHED, EXIT_NONE, EXIT_ERROR = 0, 1, 2


def run_main(program: str, body: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Run a program body, turning our errors into `program: message` and exit code 2."""
    argv = sys.argv[1:] if argv is None else argv
    debug = any(a.startswith("-D") for a in argv)
    try:
        return body(argv)
    except ArgusflowError as err:
        if debug:
            raise
        print(f"{program}: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:
        # `ra ... | head`: the reader went away; that is not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_MATCHED
    except KeyboardInterrupt:
        return 130


def entry(program: str, body: Callable[[list[str]], int]) -> None:
    sys.exit(run_main(program, body))

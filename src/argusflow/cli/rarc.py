"""rarc(5) configuration: `VARIABLE=value` lines read from /etc/ra.conf, ~/.rarc and `-F` files.

Later files override earlier ones; `-X` skips the default files (the real clients do the same),
while `-F` files are still read.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from argusflow.errors import UsageError

DEFAULT_FILES = ("/etc/ra.conf", "~/.rarc")


def parse_rarc(text: str) -> dict[str, str]:
    """Variables of one rarc file; values lose their quotes, comments and blank lines are skipped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        out[name.strip()] = unquote(value.strip())
    return out


def unquote(value: str) -> str:
    try:
        words = shlex.split(value, comments=True)
    except ValueError:
        return value.strip("\"'")
    return " ".join(words) if words else ""


def load_rarc(extra_files: list[str], skip_defaults: bool) -> dict[str, str]:
    conf: dict[str, str] = {}
    files = [] if skip_defaults else [os.path.expanduser(f) for f in DEFAULT_FILES]
    if not skip_defaults and os.environ.get("ARGUSHOME"):
        files.append(os.path.join(os.environ["ARGUSHOME"], ".rarc"))
    for path in files:
        if Path(path).is_file():
            conf.update(parse_rarc(Path(path).read_text(errors="replace")))
    for path in extra_files:
        try:
            conf.update(parse_rarc(Path(path).read_text(errors="replace")))
        except OSError as err:
            raise UsageError(f"-F {path}: {err.strerror or err}") from None
    return conf


def is_yes(value: str | None) -> bool:
    return (value or "").strip().lower() in ("yes", "1", "true", "on")

"""What the daemons (argus -d, radium -d) share: logging, detaching, the pid file, descriptors."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

from argusflow.errors import UsageError


def setup_logging(program: str, daemon: bool, debug: bool, syslog: bool = False) -> None:
    """Daemons (or syslog=True) log to syslog when there is one; otherwise stderr."""
    handler: logging.Handler
    if (daemon or syslog) and os.path.exists("/dev/log"):
        handler = logging.handlers.SysLogHandler(address="/dev/log")
        handler.setFormatter(logging.Formatter(f"{program}[%(process)d]: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            f"{program}[%(process)d]: %(asctime)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)


def daemonize(pidfile: str) -> None:
    """The classic double fork; the parent returns to the shell once the pid file exists."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    if os.path.exists("/dev/log"):
        os.dup2(devnull, 2)
    write_pidfile(pidfile)


def write_pidfile(path: str) -> None:
    try:
        with open(path, "w") as fh:
            fh.write(f"{os.getpid()}\n")
    except OSError as err:
        raise UsageError(f"pid file {path}: {err.strerror or err}") from None


def remove_pidfile(path: str | None) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


def default_pidfile(name: str) -> str:
    """`name` (e.g. radium.561.pid) in the first writable run directory."""
    for directory in ("/var/run", "/run", "/tmp"):
        if os.access(directory, os.W_OK):
            return os.path.join(directory, name)
    return name


def raise_fd_limit() -> None:
    """A thousand clients need more than the usual 1024 descriptors."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass

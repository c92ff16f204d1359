"""cli.options.take_extensions: the one helper that takes our extension options (and argus's
-i, radium's -w FILE FILTER, rasplit's -a N) out of argv before the classic parser runs."""

from __future__ import annotations

import pytest

from argusflow.cli.argus import split_interfaces
from argusflow.cli.options import Extension, Taken, take_extensions
from argusflow.cli.radium import LONG_OPTIONS, split_long_options, split_outputs
from argusflow.cli.rasplit import take_long_options
from argusflow.errors import UsageError

OPTIONS = [Extension("--utc", takes_value=False), Extension("--tz", glued="="),
           Extension("-a", glued="digits"), Extension("-w", glued="any", trailing=True)]


def test_takes_each_form_in_order() -> None:
    argv = ["-r", "f", "--tz", "UTC", "-a3", "--utc", "-w", "out", "tcp", "--tz=Asia/Tokyo",
            "-wx", "-n"]
    rest, taken = take_extensions(argv, OPTIONS)
    assert rest == ["-r", "f", "-n"]
    assert taken == [Taken("--tz", "UTC"), Taken("-a", "3"), Taken("--utc"),
                     Taken("-w", "out", "tcp"), Taken("--tz", "Asia/Tokyo"), Taken("-w", "x")]


def test_leaves_lookalikes_and_the_filter_alone() -> None:
    argv = ["-ab", "--tzx", "1", "-w", "o", "-", "--utc", "-a", "4"]
    rest, taken = take_extensions(argv, OPTIONS)
    assert rest == ["-ab", "--tzx", "1", "-", "--utc", "-a", "4"]
    assert taken == [Taken("-w", "o")]  # a trailing word never starts with '-'


def test_a_value_is_the_next_word_whatever_it_is() -> None:
    assert take_extensions(["--tz", "-x"], OPTIONS)[1] == [Taken("--tz", "-x")]
    assert take_extensions(["--tz="], OPTIONS)[1] == [Taken("--tz", "")]


@pytest.mark.parametrize(("argv", "message"), [
    (["--tz"], "option --tz needs a value"),
    (["-n", "-a"], "option -a needs a value"),
])
def test_missing_value_is_one_line(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        take_extensions(argv, OPTIONS)


def test_the_three_programs_keep_their_behaviour() -> None:
    assert take_long_options(["-M", "time", "1m", "--utc", "-a", "3", "--tz=UTC"]) == (
        ["-M", "time", "1m"], {"utc": "1", "a": "3", "tz": "UTC"})
    rest, found = split_long_options(["--allow", "10.0.0.0/8", "-P", "561", "--pidfile=/p"])
    assert rest == ["-P", "561"]
    assert found == {LONG_OPTIONS["--allow"]: "10.0.0.0/8", LONG_OPTIONS["--pidfile"]: "/p"}
    with pytest.raises(UsageError, match="^--allow needs a value$"):
        split_long_options(["--allow"])
    assert split_outputs(["-S", "h", "-w", "a", "tcp", "-wb", "-w", "c", "-X"]) == (
        ["-S", "h", "-X"], [("a", "tcp"), ("b", None), ("c", None)])
    assert split_interfaces(["-i", "eth0", "-ilo/7", "-P", "561"]) == (
        ["-P", "561"], ["eth0", "lo/7"])
    for bad in (["-i"], ["-i", ""]):
        with pytest.raises(UsageError, match="^option -i needs an interface$"):
            split_interfaces(bad)

"""The one command-line parser of every ra* program and of argus/radium.

It follows the real tools: getopt-style letters (`-nn`, `-p3`, `-L 0`, `-nr file`), options that
take a list (`-r f1 f2`, `-s saddr daddr`, `-m saddr daddr`) keep consuming words that do not
start with '-', and the filter is the words after a lone `-` that are not options (getopt
permutes, so `ra -r f - tcp -w out` writes out), or everything after `--`; words left over
before them join the filter too, as in the real ra.  `local` before a filter means: do not send
it to a remote server (the filter still applies locally).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from argusflow.errors import UsageError

# Letters that are plain switches (their count matters for -n), take one value, or a list.
FLAGS = set("AabdGhHiJlOquvVXxz%")
FLAGS_COUNTED = {"n"}
ONE_VALUE = set("BcCDeEfFgIkKLNoPpQtTUwYZ")
MANY_VALUES = set("rRsSMm")


@dataclass
class ParsedArgs:
    """Options as given: switches with their count, valued options with all their values."""

    program: str
    counts: dict[str, int] = field(default_factory=dict)
    values: dict[str, list[str]] = field(default_factory=dict)
    filter: str | None = None
    filter_is_local: bool = False
    order: list[str] = field(default_factory=list)

    def flag(self, letter: str) -> int:
        return self.counts.get(letter, 0)

    def value(self, letter: str, default: str | None = None) -> str | None:
        """The last value given for a one-value option."""
        got = self.values.get(letter)
        return got[-1] if got else default

    def all(self, letter: str) -> list[str]:
        """Every value given for a list option, across repeated occurrences."""
        return list(self.values.get(letter, []))

    def given(self, letter: str) -> bool:
        return letter in self.counts or letter in self.values


def parse_argv(argv: list[str], program: str, *, flags: set[str] | None = None,
               one_value: set[str] | None = None, many_values: set[str] | None = None) -> ParsedArgs:
    """Parse `argv` (without the program name) the way the Argus clients do."""
    switch_letters = FLAGS | FLAGS_COUNTED | (flags or set())
    one = ONE_VALUE | (one_value or set())
    many = MANY_VALUES | (many_values or set())
    args = ParsedArgs(program)
    leftovers: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            leftovers.extend(argv[i + 1:])
            break
        if not word.startswith("-") or len(word) == 1:
            # getopt permutes: a lone '-' starts the filter, but options may still follow it
            # (`ra -r f - tcp -w out`, as the real tools accept); only '--' ends the options.
            if word != "-":
                leftovers.append(word)
            i += 1
            continue
        i = parse_cluster(argv, i, args, switch_letters, one, many)
    set_filter(args, leftovers)
    return args


def parse_cluster(argv: list[str], i: int, args: ParsedArgs, switches: set[str], one: set[str],
                  many: set[str]) -> int:
    """Parse one word of option letters (`-nnu`, `-p3`, `-r`), return the next word's index."""
    word = argv[i]
    for k, letter in enumerate(word[1:], start=1):
        if letter in switches:
            args.counts[letter] = args.counts.get(letter, 0) + 1
            args.order.append(letter)
            continue
        if letter not in one and letter not in many:
            raise UsageError(f"unknown option -{letter} (in '{word}'); see 'man {args.program}'")
        rest = word[k + 1:]
        i += 1
        if rest:
            first = rest
        elif i < len(argv):
            first = argv[i]
            i += 1
        else:
            raise UsageError(f"option -{letter} needs a value")
        found = args.values.setdefault(letter, [])
        found.append(first)
        args.order.append(letter)
        if letter in many:
            while i < len(argv) and not argv[i].startswith("-"):
                found.append(argv[i])
                i += 1
        return i
    return i + 1


def set_filter(args: ParsedArgs, words: list[str]) -> None:
    if not words:
        return
    if words[0] == "local":
        args.filter_is_local = True
        words = words[1:]
    text = " ".join(words).strip()
    args.filter = text or None


# --- options taken out before the classic parser -------------------------------------------------

@dataclass(frozen=True)
class Extension:
    """An option the classic parser does not know (or knows differently), taken out first.

    `glued` says how a value may be written in the same word: "=" (`--tz=UTC`), "any"
    (`-wFILE`, `-ieth0`), "digits" (`-a3`: other `-a...` words are left to the parser), or ""
    (only as the next word).  `trailing` takes one more word when it does not start with '-'
    (radium's `-w FILE FILTER`)."""

    name: str
    takes_value: bool = True
    glued: str = ""
    trailing: bool = False
    missing: str = ""  # the one-line error when the value is missing

    def glued_value(self, word: str) -> str | None:
        """The value written in `word` itself, or None when `word` is not this option so."""
        if not self.glued or not word.startswith(self.name) or word == self.name:
            return None
        rest = word[len(self.name):]
        if self.glued == "=":
            return rest[1:] if rest.startswith("=") else None
        if self.glued == "digits":
            return rest if rest.isdigit() else None
        return rest


@dataclass(frozen=True)
class Taken:
    name: str
    value: str | None = None
    trailing: str | None = None


def take_extensions(argv: list[str], options: list[Extension]) -> tuple[list[str], list[Taken]]:
    """Take `options` out of argv (up to a lone '-' or '--', which ends the options): returns the
    other words in order, and what was taken in order (repeated options appear repeatedly)."""
    rest: list[str] = []
    taken: list[Taken] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in ("-", "--"):
            rest.extend(argv[i:])
            break
        i, found = _take_one(argv, i, options)
        if found is None:
            rest.append(word)
        else:
            taken.append(found)
    return rest, taken


def _take_one(argv: list[str], i: int, options: list[Extension]) -> tuple[int, Taken | None]:
    """The option at argv[i], if it is one of `options`: (index of the next word, what it took)."""
    word = argv[i]
    for opt in options:
        if word == opt.name:
            if not opt.takes_value:
                return i + 1, Taken(opt.name)
            if i + 1 >= len(argv):
                raise UsageError(opt.missing or f"option {opt.name} needs a value")
            value, i = argv[i + 1], i + 2
        elif (value := opt.glued_value(word)) is not None:
            i += 1
        else:
            continue
        trailing = None
        if opt.trailing and i < len(argv) and not argv[i].startswith("-"):
            trailing, i = argv[i], i + 1
        return i, Taken(opt.name, value, trailing)
    return i + 1, None


def split_long_options(argv: list[str], options: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """Our `--name value` / `--name=value` extensions, taken out before the classic parser
    (`options`: option -> the configuration variable it sets; argus and radium pass theirs)."""
    wanted = [Extension(name, glued="=", missing=f"{name} needs a value") for name in options]
    rest, taken = take_extensions(argv, wanted)
    return rest, {options[t.name]: t.value or "" for t in taken}

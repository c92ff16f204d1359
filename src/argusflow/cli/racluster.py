"""racluster: merge the status records of each flow, or aggregate by any key (racluster(1), 3.0.8).

    racluster [-f racluster.conf] [-m KEY ...] [-M MODE ...] [ra options] [- FILTER]

Pipeline: argus-file source -> selection (filter, -t) -> ops.cluster (one aggregator per model)
-> text printer or Argus writer.  `-w` of every record with one plain model (no selection, no
racluster.conf, no rmon, no prefix lengths or matrix) takes the numpy route instead: decoded
numpy columns -> ops.cluster_columns -> Argus writer, without polars.

Deviations from 3.0.8: `-m none` really collapses every record into one (3.0.8 does not).
Not done yet: `-%` (percentages), the rmon column labels (Host, OutPkts, InPkts) and `-M norep`'s
Trans of 0 in printed text (both need printer support).
"""

from __future__ import annotations

import gc
import os
import re
import shlex
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from argusflow.cli.client import ClientSession, compile_record_filter
from argusflow.cli.malloc import reuse_freed_memory
from argusflow.cli.options import ParsedArgs, parse_argv
from argusflow.cli.runner import EXIT_MATCHED, entry
from argusflow.errors import CorruptInput, UsageError
from argusflow.lazy import LazyModule
from argusflow.ops.cluster_model import Model, parse_model
from argusflow.records.output import ArgusOutput

# polars, ops.cluster and the printer are imported on first use: `racluster -w` of the models
# ops.cluster_columns takes runs without them (polars alone is ~0.25 s of start-up).
pl = LazyModule("polars")

USAGE = """usage: racluster [-f racluster.conf] [-m KEY ...] [-M MODE ...] [ra options] [- filter]
  -m KEY ...    aggregation keys: none srcid smac dmac soui doui smpls dmpls svlan dvlan
                saddr[/len] daddr[/len] matrix[/len] proto sport dport stos dtos sttl dttl
                stcpb dtcpb inode[/len] sco dco sas das ias   (default: the flow key + srcid)
  -M MODE ...   correct | nocorrect | norep | rmon | ind | replace
  -f FILE       racluster.conf: fall-through rules (filter= grep= model= status= idle= label= cont)
  -w FILE       write the merged records as Argus ('-' is stdout) instead of printing
  ra's options: -r -R -s -n -c -u -p -L -t -z -Z -F -X -D (see ra -h)
Exit status: 0 records matched, 1 none matched, 2 error."""

if TYPE_CHECKING:
    import polars

    from argusflow.ops.cluster import Clusterer
    from argusflow.ops.cluster_timers import Clock
    from argusflow.records.codec import RecordReader
    from argusflow.records.writer import Columns

WRITE_ROWS = 8192  # merged records encoded at once for -w
MODES = ("correct", "nocorrect", "norep", "rmon", "ind", "replace")


@dataclass
class Rule:
    """One racluster.conf statement: which records, aggregated how."""

    clusterer: Clusterer
    selector: polars.Expr | None = None
    grep: re.Pattern[str] | None = None
    cont: bool = False

    def matches(self, batch: polars.DataFrame) -> polars.Series:
        mask = pl.Series([True] * batch.height)
        if self.selector is not None:
            mask = batch.select(self.selector.fill_null(False)).to_series()
        if self.grep is not None:
            pattern = self.grep.pattern
            mask = mask & batch.select(pl.col("label").str.contains(pattern).fill_null(False)) \
                .to_series()
        return mask


def _words(text: str) -> dict[str, str]:
    """`filter="tcp" model="saddr daddr" status=120 cont` -> {"filter": "tcp", ..., "cont": ""}."""
    out: dict[str, str] = {}
    try:
        parts = shlex.split(text, comments=True)
    except ValueError as err:
        raise UsageError(f"racluster.conf: {err}: {text}") from None
    for part in parts:
        name, eq, value = part.partition("=")
        out[name.strip().lower()] = value if eq else ""
    return out


def load_conf(path: str, modes: set[str]) -> tuple[list[Rule], dict[str, str]]:
    """The rules and global settings of a racluster.conf file."""
    # Imported here: the timers start numba, which a run without racluster.conf does not need.
    from argusflow.ops.cluster import Clusterer
    from argusflow.ops.cluster_timers import Clock, Timers

    try:
        text = open(path, encoding="utf-8", errors="replace").read()  # noqa: SIM115
    except OSError as err:
        raise UsageError(f"-f {path}: {err.strerror or err}") from None
    settings: dict[str, str] = {}
    rules: list[Rule] = []
    clock = Clock()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("RACLUSTER_"):
            name, _, value = line.partition("=")
            settings[name.strip()] = value.strip().strip("\"'")
            continue
        words = _words(line)
        known = {"filter", "grep", "model", "status", "idle", "label", "cont"}
        if not words or not set(words) <= known:
            raise UsageError(f"{path}: line {number}: expected filter=, grep=, model=, status=, "
                             f"idle=, label= or cont, found '{line}'")
        model = parse_model(words["model"].split()) if words.get("model") else Model()
        # racluster 3.0.8 turns field preservation on for its first aggregator only.
        model.preserve = not rules or settings.get("RACLUSTER_PRESERVE_FIELDS", "no").lower() \
            in ("yes", "1")
        clusterer = Clusterer(model=model, correct="nocorrect" not in modes,
                              report=_report(settings, modes), label=words.get("label") or None,
                              sort=False)
        selector = None
        if words.get("filter"):
            selector = compile_record_filter(words["filter"]).expr  # type: ignore[attr-defined]
        grep = re.compile(words["grep"]) if words.get("grep") else None
        clusterer.timers = Timers(_seconds_us(words, "status", path, number),
                                  _seconds_us(words, "idle", path, number), clock)
        rules.append(Rule(clusterer, selector, grep, "cont" in words))
    if rules:
        rules.append(fallback_rule(rules, settings, modes, clock))
    if not any(r.clusterer.timers.status_us or r.clusterer.timers.idle_us  # type: ignore[union-attr]
               for r in rules):
        for rule in rules:  # no timers: one aggregate per key, the untimed path
            rule.clusterer.timers = None
    return rules, settings


def fallback_rule(rules: list[Rule], settings: dict[str, str], modes: set[str],
                  clock: Clock) -> Rule:
    """Records that no statement takes are aggregated on the default flow key, as racluster
    3.0.8 does (a conf of one `filter="tcp"` line still outputs every other flow, merged)."""
    from argusflow.ops.cluster import Clusterer
    from argusflow.ops.cluster_timers import Timers

    model = Model()
    model.preserve = settings.get("RACLUSTER_PRESERVE_FIELDS", "no").lower() in ("yes", "1")
    clusterer = Clusterer(model=model, correct="nocorrect" not in modes,
                          report=_report(settings, modes), sort=False)
    clusterer.timers = Timers(0, 0, clock)
    return Rule(clusterer)


def _seconds_us(words: dict[str, str], name: str, path: str, number: int) -> int:
    """`status=120` / `idle=10` in microseconds (0: no timer)."""
    text = words.get(name) or "0"
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{path}: line {number}: {name}={text}: expected seconds") from None
    return max(0, round(value * 1e6))


def _report(settings: dict[str, str], modes: set[str]) -> bool:
    if "norep" in modes:
        return False
    return settings.get("RACLUSTER_REPORT_AGGREGATION", "yes").lower() not in ("no", "0")


def make_rules(args: ParsedArgs, modes: set[str]) -> list[Rule]:
    from argusflow.ops.cluster import Clusterer

    conf = args.value("f")
    if conf:
        rules, _ = load_conf(conf, modes)
        if rules:
            return rules
    model = parse_model(args.all("m"))
    if "rmon" in modes and model.default:
        # racluster's rmon model: the host and its port (peers merge by common prefix).
        model = Model(words=("srcid", "proto", "saddr", "sport"), default=False)
    correct = "nocorrect" not in modes and "rmon" not in modes
    return [Rule(Clusterer(model=model, correct=correct, rmon="rmon" in modes,
                           report="norep" not in modes))]


def dispatch(rules: list[Rule], batch: pl.DataFrame) -> None:
    """Fall-through: a record goes to the first rule it matches (and on, past `cont` rules)."""
    if len(rules) == 1 and rules[0].selector is None and rules[0].grep is None \
            and rules[0].clusterer.timers is None:
        rules[0].clusterer.add(batch)  # -m or the default model: every record, no masks
        return
    timers = rules[0].clusterer.timers if rules else None
    if timers is not None:
        batch = timers.clock.advance(batch)  # every record moves the timers' clock
    remaining = pl.Series([True] * batch.height)
    for rule in rules:
        hit = remaining & rule.matches(batch)
        if hit.any():
            rule.clusterer.add(batch.filter(hit))
        if not rule.cont:
            remaining = remaining & ~hit
        if not remaining.any():
            break


def merged_records(rules: list[Rule]) -> pl.DataFrame:
    results = [rule.clusterer.result() for rule in rules]
    if not results:
        return pl.DataFrame()
    # The fall-back rule is often empty, and an empty result has no timer columns.
    parts = [part for part in results if part.height]
    if not parts:
        return results[0]
    if rules[0].clusterer.timers is None:
        return pl.concat(parts)
    # Timed rules: records in the order racluster reports them (ops.cluster_timers), across
    # rules; ties in rule order, then least recently updated first.
    order = ["_emit", "_phase", "_rule", "_last"]
    parts = [p.with_columns(pl.lit(i, dtype=pl.Int64).alias("_rule")) for i, p in enumerate(parts)]
    return pl.concat(parts).sort(order).drop(order)


def input_groups(session: ClientSession, each_file: bool) -> Iterator[tuple[str | None, Iterator]]:
    """The batches to aggregate together: every input at once, or (-M ind) one file at a time."""
    if not each_file:
        yield None, session.batches()
        return
    for path in session.inputs:
        yield path, session._batches_of(path)  # noqa: SLF001 - one input at a time


def racluster(argv: list[str]) -> int:
    args = parse_argv(argv, "racluster")
    if args.flag("h"):
        print(USAGE)
        return EXIT_MATCHED
    modes = {m.lower() for m in args.all("M")}
    if "replace" in modes and args.value("w"):
        raise UsageError("-M replace and -w cannot be used together")
    reuse_freed_memory(arenas=1)  # before the first chunk's arrays (and read_ahead's thread)
    session = ClientSession.from_args("racluster", args)
    out_path = args.value("w")
    replace = "replace" in modes
    model = columns_model(args, modes, session)
    if out_path and not replace and model is not None:
        return write_merged_columns(session, model, modes, out_path)
    from argusflow.cli.printing import make_printer
    from argusflow.ops.cluster import AGR_FROM_INPUT

    sink = None
    if not replace:
        sink = ArgusOutput(out_path, synthesise_agr=False) if out_path \
            else make_printer(args, session.conf)
    matched = 0
    try:
        for path, batches in input_groups(session, "ind" in modes or replace):
            rules = make_rules(args, modes)
            start_mar: bytes | None = None
            for batch, mar in batches:
                start_mar = start_mar or mar
                matched += batch.height
                dispatch(rules, batch)
                del batch  # not held while the next chunk is decoded
            records = merged_records(rules)
            rules = []  # the aggregators' state is in `records` now: free it before writing
            if replace and path is not None:
                replace_file(path, records.drop(AGR_FROM_INPUT), start_mar)
            elif out_path:
                write_chunks(sink, records.drop(AGR_FROM_INPUT), start_mar)  # type: ignore[arg-type]
            elif not args.flag("q") and records.height:
                printable = unoriented(with_single_stats(records), args, session.conf)
                sink.write(printable)  # type: ignore[union-attr, call-arg]
            del records
    finally:
        if sink is not None:
            sink.close()
        sys.stdout.flush()
    # As ra: 1 when no record (MARs included) got through the filter, as 3.0.8 does.
    return session.exit_code(matched)


def columns_model(args: ParsedArgs, modes: set[str], session: ClientSession) -> Model | None:
    """The model when ops.cluster_columns can aggregate the records (no polars): every record
    of the inputs (no selection), a -m model it takes, no racluster.conf, no rmon.
    ARGUSFLOW_CLUSTER_COLUMNS=0 turns this path off."""
    from argusflow.ops.cluster_columns import supports

    if os.environ.get("ARGUSFLOW_CLUSTER_COLUMNS", "1") == "0" or args.value("f") \
            or "rmon" in modes or session.selects or session.count_range is not None \
            or session.sources:
        return None
    model = parse_model(args.all("m"))
    return model if supports(model, rmon=False) else None


@dataclass
class Chunk:
    """One chunk's records as numpy columns (records.dsr_decode), MARs included."""

    columns: dict[str, np.ndarray]
    height: int
    start_mar: bytes | None = None  # the input's START MAR


def decoded_chunks(session: ClientSession, path: str) -> Iterator[Chunk]:
    """Every record of one input, chunk by chunk, as numpy columns; damage is reported (one
    line) after the records before it, and reading goes on with the next input."""
    from argusflow.records.source import CHUNK_BYTES, read_input

    def feed(reader: RecordReader, data: bytes) -> Chunk:
        # every column the records carry; the columns only are kept, not the bytes that
        # decoded.frame would decode again
        decoded = reader.feed_columns(data, None)
        return Chunk(decoded.columns, decoded.n, decoded.start_mar)

    try:
        yield from read_input(path, None, CHUNK_BYTES, feed)
    except (CorruptInput, UsageError) as err:
        session.report(str(err))


def read_ahead(chunks: Iterator[Chunk], ahead: bool = True) -> Iterator[Chunk]:
    """The chunks, each next one decoded in a thread while the caller merges the last: the
    merge kernel releases the GIL (aot.NOGIL), numpy's larger operations too.  One chunk more
    is held (~15 MB).  ARGUSFLOW_READ_AHEAD=0: no thread."""
    if not ahead:
        yield from chunks
        return
    box: dict[str, Any] = {}

    def step() -> None:
        try:
            box["chunk"] = next(chunks, None)
        except BaseException as err:  # noqa: BLE001 - raised again in the caller's thread
            box["error"] = err

    worker = threading.Thread(target=step, daemon=True)
    worker.start()
    try:
        while True:
            worker.join()
            if "error" in box:
                raise box.pop("error")
            chunk = box.pop("chunk")
            if chunk is None:
                return
            worker = threading.Thread(target=step, daemon=True)
            worker.start()
            yield chunk
            del chunk
    finally:
        worker.join()  # a chunk being decoded when the caller stopped


def write_merged_columns(session: ClientSession, model: Model, modes: set[str],
                         out_path: str) -> int:
    """racluster -w over numpy columns (ops.cluster_columns): no polars is imported."""
    from argusflow.ops.cluster_columns import ColumnClusterer

    sink = ArgusOutput(out_path, synthesise_agr=False)
    groups = [[path] for path in session.inputs] if "ind" in modes else [session.inputs]
    ahead = os.environ.get("ARGUSFLOW_READ_AHEAD", "1") != "0"
    matched = 0
    # The decoder makes a bytes object per unparsed DSR payload: the cyclic collector walked
    # them again and again (perf: 2% of the run), and nothing here makes cycles.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for paths in groups:
            clusterer = ColumnClusterer(model=model, correct="nocorrect" not in modes,
                                        report="norep" not in modes)
            start_mar: bytes | None = None
            for path in paths:
                for chunk in read_ahead(decoded_chunks(session, path), ahead):
                    start_mar = start_mar or chunk.start_mar
                    matched += chunk.height
                    clusterer.add(chunk.columns, chunk.height)
                    del chunk  # not held while the next chunk is decoded
            records = clusterer.result()
            del clusterer  # its state is in `records` now
            write_column_chunks(sink, records, start_mar)
            del records
    finally:
        if collecting:
            gc.enable()
        sink.close()
        sys.stdout.flush()
    return session.exit_code(matched)


def write_column_chunks(sink: ArgusOutput, records: Columns, start_mar: bytes | None) -> None:
    """write_chunks for a writer Columns batch (it holds no MARs)."""
    from argusflow.records.writer import Columns, encode_batch

    for lo in range(0, records.height, WRITE_ROWS):
        hi = min(lo + WRITE_ROWS, records.height)
        part = Columns({k: v[lo:hi] for k, v in records.values.items()}, hi - lo,
                       {k: v.take(np.arange(lo, hi)) for k, v in records.strings.items()})
        sink.write_chunk(encode_batch(part, synthesise_agr=False), hi - lo, start_mar, None, False)


def write_chunks(sink: ArgusOutput, records: pl.DataFrame, start_mar: bytes | None) -> None:
    """The merged records encoded and written WRITE_ROWS at a time: the encoder's buffers for
    the whole output at once were racluster's peak of memory."""
    for lo in range(0, records.height, WRITE_ROWS):
        sink.write(records.slice(lo, WRITE_ROWS), start_mar)


def with_single_stats(records: pl.DataFrame) -> pl.DataFrame:
    """For printing: a record that merged nothing shows its own duration as its statistics; its
    deviation is that of the last record printed before it whose statistics came from the input
    (racluster 3.0.8 does not reset it), 0 when there is none."""
    from argusflow.ops.cluster import AGR_FROM_INPUT
    from argusflow.records import derive
    from argusflow.records.schema import DSR_BITS

    single = ~derive.has("agr")
    dur = derive.dur()
    stale = (pl.when(pl.col(AGR_FROM_INPUT) & ~single).then(pl.col("agr_act_stdev"))
             .otherwise(None).forward_fill().fill_null(0.0))
    out = records.with_columns(
        pl.when(single).then(pl.col("dsrs") | DSR_BITS["agr"]).otherwise(pl.col("dsrs"))
        .cast(pl.UInt32).alias("dsrs"),
        *[pl.when(single).then(value).otherwise(pl.col(name)).cast(records.schema[name])
          .alias(name) for name, value in (
              ("agr_count", pl.lit(1)), ("agr_act_n", pl.lit(1)), ("agr_act_min", dur),
              ("agr_act_mean", dur), ("agr_act_max", dur), ("agr_act_stdev", stale),
              ("agr_subtype", pl.lit(4)), ("agr_qual", pl.lit(1)))],
    )
    return out.drop(AGR_FROM_INPUT)


def unoriented(records: pl.DataFrame, args: ParsedArgs, conf: dict[str, str]) -> pl.DataFrame:
    """racluster prints its records as merged, without ra's TCP re-orientation (spec §9.7), which
    our printer always applies: turn those records round first, so that it turns them back (when
    the turned record qualifies again, which is the usual case)."""
    from argusflow.cli.printing import print_options
    from argusflow.ops.cluster import reverse
    from argusflow.records import derive

    numeric = print_options(args, conf).nflag in (1, 2)
    mask = derive.reverse_mask(numeric, derive.services("tcp"))
    flagged = records.with_columns(mask.alias("_m"))
    turned = reverse(flagged, pl.col("_m"))
    again = turned.select(mask).to_series()
    rows = flagged["_m"] & again
    if not rows.any():
        return records
    return reverse(records.with_columns(rows.alias("_r")), pl.col("_r")).drop("_r")


def replace_file(path: str, records: pl.DataFrame, start_mar: bytes | None) -> None:
    """-M replace: the file's records become the merged ones, written under a temporary name and
    renamed over the original, compressed as the original was."""
    from argusflow.records.output import synthesised_start_mar
    from argusflow.records.writer import encode_batch

    data = (start_mar or synthesised_start_mar()) + encode_batch(records, synthesise_agr=False)
    head = open(path, "rb").read(6)  # noqa: SIM115
    if head[:2] == b"\x1f\x8b":
        import gzip
        data = gzip.compress(data)
    elif head[:3] == b"BZh":
        import bz2
        data = bz2.compress(data)
    elif head[:6] == b"\xfd7zXZ\x00":
        import lzma
        data = lzma.compress(data)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


__all__ = ["racluster", "main"]


def main() -> None:
    entry("racluster", racluster)

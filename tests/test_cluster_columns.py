"""racluster -w over numpy columns (ops.cluster_columns) against the polars aggregator
(ops.cluster): the same bytes written for every model the numpy path takes, exact group ids when
two keys share a hash, and no polars imported on that path."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from argusflow.cli.racluster import racluster
from argusflow.cli.runner import run_main
from argusflow.ops import cluster_columns
from argusflow.ops.cluster_columns import RowKeys, supports
from argusflow.ops.cluster_model import REVERSED_BITS, REVERSED_PAIRS, parse_model
from argusflow.records import derive

MODELS = {
    "default": [],
    "saddr_daddr": ["-m", "saddr", "daddr"],
    "proto_dport": ["-m", "proto", "dport"],
    "srcid_sport": ["-m", "srcid", "sport"],
    "macs_ttl": ["-m", "smac", "dmac", "sttl", "dtos"],
    "soui_svlan_smpls": ["-m", "soui", "svlan", "smpls", "stcpb"],
    "none": ["-m", "none"],
    "nocorrect_norep": ["-M", "nocorrect", "norep"],
}


def _written(argv: list[str], out: Path) -> bytes:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = run_main("racluster", racluster, [*argv, "-w", str(out)])
    assert code in (0, 1)
    return out.read_bytes() if out.exists() else b""


def test_reversal_pairs_are_derives() -> None:
    """cluster_model keeps a polars-free copy of derive's reversal lists: they must agree."""
    assert list(REVERSED_PAIRS) == derive._SWAP_PAIRS
    assert {k: list(v) for k, v in REVERSED_BITS.items()} == derive._SWAP_BITS


@pytest.mark.parametrize("model", list(MODELS))
def test_same_bytes_as_the_polars_aggregator(model: str, sample_argus_files: list[Path],
                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opts = MODELS[model]
    words = opts[1:] if opts[:1] == ["-m"] else []
    assert supports(parse_model(words), rmon=False)
    for path in sample_argus_files:
        argv = ["-X", "-r", str(path), *opts]
        monkeypatch.setenv("ARGUSFLOW_CLUSTER_COLUMNS", "1")
        ours = _written(argv, tmp_path / f"{path.stem}.columns.argus")
        monkeypatch.setenv("ARGUSFLOW_CLUSTER_COLUMNS", "0")
        theirs = _written(argv, tmp_path / f"{path.stem}.polars.argus")
        assert ours == theirs, f"{path.name} {opts}: the numpy path wrote other bytes"


def test_every_input_or_each_file(sample_argus_files: list[Path], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Several inputs: merged together, and with -M ind one file at a time."""
    inputs = [a for p in sample_argus_files[:6] for a in ("-r", str(p))]
    for opts in ([], ["-M", "ind"]):
        monkeypatch.setenv("ARGUSFLOW_CLUSTER_COLUMNS", "1")
        ours = _written(["-X", *inputs, *opts], tmp_path / "columns.argus")
        monkeypatch.setenv("ARGUSFLOW_CLUSTER_COLUMNS", "0")
        theirs = _written(["-X", *inputs, *opts], tmp_path / "polars.argus")
        assert ours == theirs


LABELS_CONF = """\
filter="udp" model="saddr daddr proto dport" label="udp"
filter="tcp" model="saddr proto" label="tcp"
"""


@pytest.mark.parametrize("opts", [[], ["-m", "saddr"], ["-m", "proto", "dport"]])
def test_merging_merged_records(opts: list[str], sample_argus_files: list[Path], tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Input that racluster wrote (aggregation DSRs, labels): merged again alike."""
    conf = tmp_path / "labels.conf"
    conf.write_text(LABELS_CONF)
    inputs = [a for p in sample_argus_files for a in ("-r", str(p))]
    merged = tmp_path / "merged.argus"
    _written(["-X", *inputs, "-f", str(conf)], merged)
    assert merged.stat().st_size > 0
    argv = ["-X", "-r", str(merged), *opts]
    monkeypatch.setenv("ARGUSFLOW_CLUSTER_COLUMNS", "1")
    ours = _written(argv, tmp_path / "columns.argus")
    monkeypatch.setenv("ARGUSFLOW_CLUSTER_COLUMNS", "0")
    assert ours == _written(argv, tmp_path / "polars.argus")


def test_ids_are_exact_when_hashes_collide(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hash that collides for most keys: the ids (first appearance order) stay those of the
    distinct key rows, across batches."""
    rng = np.random.default_rng(7)
    batches = [rng.integers(0, 5, size=(200, 3)).astype(np.uint64) for _ in range(4)]
    expected = RowKeys()
    want = [expected.number(b) for b in batches]
    assert not expected.exact
    monkeypatch.setattr(cluster_columns, "hash_rows", lambda keys: keys[:, 0] % np.uint64(2))
    colliding = RowKeys()
    got = [colliding.number(b) for b in batches]
    assert colliding.exact
    for (gid_a, fresh_a), (gid_b, fresh_b) in zip(want, got, strict=True):
        assert np.array_equal(gid_a, gid_b)
        assert np.array_equal(fresh_a, fresh_b)
    # The ids are the first-appearance numbering of the distinct rows.
    rows = np.concatenate(batches)
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    assert np.array_equal(np.concatenate([g for g, _ in want]), rank[inverse.reshape(-1)])


def test_written_without_polars(sample_argus_files: list[Path], tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from argusflow.cli.racluster import racluster\n"
        f"racluster(['-X', '-r', {str(sample_argus_files[0])!r}, '-m', 'saddr', 'daddr', "
        f"'-w', {str(tmp_path / 'out.argus')!r}])\n"
        "assert 'polars' not in sys.modules, 'polars was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr

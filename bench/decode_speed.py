"""Decode-only speed: records/s for framing + DSR decode of an Argus file (issue 2: >= 1 M/s).

    .venv/bin/python bench/decode_speed.py [FILE] [--runs N] [--numba | --numpy]

Times `source.iter_batches(FILE)` (4 MB chunks, as `ra -r` reads) inside this process, after one
warm-up pass (imports, page cache, numba's cached kernels).  Then, on the same chunks held in
memory, the CPU seconds of framing, DSR decode and DataFrame assembly (the least of `--runs`).
Wall seconds: the median of `--runs` passes (the machine is shared; the median resists the
others' load), and the median CPU seconds of this process (all threads).
"""

from __future__ import annotations

import argparse
import statistics
import time

from argusflow.capture import jit
from argusflow.records import codec, dsr_decode, framing
from argusflow.records.source import CHUNK_BYTES, iter_batches


def whole(path: str) -> int:
    return sum(batch.height for batch in iter_batches(path))


def stages(path: str) -> dict[str, float]:
    """Seconds per stage over the file's chunks (the pending tail carried over as the reader does)."""
    with open(path, "rb") as f:
        data = f.read()
    spent = {"framing": 0.0, "decode": 0.0, "frame": 0.0}
    compiled = codec.use_numba(len(data))
    pending = data[:0]
    for at in range(0, len(data), CHUNK_BYTES):
        buf = pending + data[at:at + CHUNK_BYTES]
        t0 = time.process_time()
        raw = dsr_decode.ByteBuffer(buf, compiled=compiled)
        found = framing.frame(raw.u8[:len(buf)], compiled)
        t1 = time.process_time()
        columns = dsr_decode.decode(raw, found)
        t2 = time.process_time()
        columns["offset"] = found.starts.astype("uint64")
        columns["mar_raw"] = codec.mar_bytes(raw.raw, found.starts, found.lengths, columns["rtype"])
        codec.to_frame(columns, len(found.starts))
        t3 = time.process_time()
        spent["framing"] += t1 - t0
        spent["decode"] += t2 - t1
        spent["frame"] += t3 - t2
        pending = buf[found.end:]
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default="/tmp/bench/big.argus")
    parser.add_argument("--runs", type=int, default=5)
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--numba", action="store_true", help="force numba's kernels")
    choice.add_argument("--numpy", action="store_true", help="force the numpy decoders")
    args = parser.parse_args()
    if args.numba or args.numpy:
        jit.FORCE = bool(args.numba)
    records = whole(args.path)  # warm-up
    walls, cpus = [], []
    for _ in range(args.runs):
        t, c = time.perf_counter(), time.process_time()
        whole(args.path)
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    runs = [stages(args.path) for _ in range(args.runs)]
    parts = {k: min(run[k] for run in runs) for k in runs[0]}
    shares = "  ".join(f"{k} {v:.3f} s" for k, v in parts.items())
    print(f"{args.path}: {records} records  {wall:.3f} s  {records / wall / 1e3:.0f}k records/s  "
          f"(median of {args.runs}; min {min(walls):.3f} s; cpu {cpu:.3f} s, "
          f"{records / cpu / 1e3:.0f}k records/cpu-s)  stages: {shares}")


if __name__ == "__main__":
    main()

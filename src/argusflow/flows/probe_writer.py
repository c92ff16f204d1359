"""The probe's Argus file sink: the shared client encoder plus what only argus writes.

The client encoder (records.writer, the byte form of ra -w / racluster) leaves out the RTP
network object, as the real clients do when they rewrite records; argus itself writes it and
that is what makes ra print `rtp` for the flow.  So RTP rows are encoded as an opaque network
object under the RTCP subtype (which the encoder passes through), and the subtype byte is then
set to RTP in the encoded bytes, found exactly by framing them (records.framing).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from argusflow.records.framing import frame
from argusflow.records.output import ArgusOutput, drop_leading_copy, synthesised_start_mar
from argusflow.records.writer import encode_batch

NET_DSR, NET_RTCP, NET_RTP = 0x30, 0x09, 0x0A


def encode_probe_batch(batch: pl.DataFrame) -> bytes:
    """Encode records as argus would be read back by the clients (no aggregation DSR)."""
    rtp = (batch["net_subtype"] == NET_RTP) & (batch["rtype"] != 0x80)
    if not rtp.any():
        return encode_batch(batch, synthesise_agr=False)
    batch = batch.with_columns(
        pl.when(rtp).then(pl.lit(NET_RTCP, dtype=pl.UInt8)).otherwise(pl.col("net_subtype"))
        .alias("net_subtype"))
    data = np.frombuffer(encode_batch(batch, synthesise_agr=False), dtype=np.uint8).copy()
    found = frame(data)  # numba's framer only if loaded already: the numpy one frames the same
    at = found.dsr_pos[(found.dsr_kind == NET_DSR) & (found.dsr_sub == NET_RTCP)]
    data[at + 1] = NET_RTP
    return data.tobytes()


class ProbeOutput(ArgusOutput):
    """`-w FILE` / `-w -` for argus: appends, START MAR first in a new file (records.output)."""

    def __init__(self, path: str) -> None:
        super().__init__(path, synthesise_agr=False)

    def write(self, batch: pl.DataFrame, start_mar: bytes | None) -> None:
        if batch.height == 0:
            return
        stream = self._open()
        if self._needs_header:
            header = start_mar or synthesised_start_mar()
            self._emit(stream, header)
            self._needs_header = False
            batch = drop_leading_copy(batch, header)
        self._emit(stream, encode_probe_batch(batch))
        self.records_written += batch.height

"""The probe's Argus file sink: the shared client encoder plus what only argus writes.

The client encoder (records.writer, the byte form of ra -w / racluster) writes the RTP network
object as it finds it in `net_raw`, with the qualifier of `net_qual` (0 for the probe's
records), which is how argus writes it: that is what makes ra print `rtp` for the flow.  The
file path gets its records as numpy columns (records.writer.Columns) and never imports polars.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO

from argusflow.records.output import ArgusOutput, drop_leading_copy, synthesised_start_mar
from argusflow.records.writer import Columns, encode_batch

if TYPE_CHECKING:
    import polars as pl


def encode_probe_batch(batch: pl.DataFrame | Columns) -> bytes:
    """Encode records as argus would be read back by the clients (no aggregation DSR)."""
    return encode_batch(batch, synthesise_agr=False)


class ProbeOutput(ArgusOutput):
    """`-w FILE` / `-w -` for argus: appends, START MAR first in a new file (records.output)."""

    def __init__(self, path: str) -> None:
        super().__init__(path, synthesise_agr=False)

    def write(self, batch: pl.DataFrame | Columns, start_mar: bytes | None) -> None:
        if batch.height == 0:
            return
        stream = self._open()
        header = self._start_file(stream, start_mar)
        if header is not None and not isinstance(batch, Columns):  # columns hold no MAR
            batch = drop_leading_copy(batch, header)
        self._emit(stream, encode_probe_batch(batch))
        self.records_written += batch.height

    def write_mar(self, mar: bytes, start_mar: bytes | None) -> None:
        """A MAR (whole words) after the records, as the encoder would copy it."""
        stream = self._open()
        self._start_file(stream, start_mar)
        self._emit(stream, mar)
        self.records_written += 1

    def _start_file(self, stream: BinaryIO, start_mar: bytes | None) -> bytes | None:
        """The START MAR a new file opens with (None: the file has one already)."""
        if not self._needs_header:
            return None
        header = start_mar or synthesised_start_mar()
        self._emit(stream, header)
        self._needs_header = False
        return header

"""Binary Argus output (`-w FILE`, `-w -`): the sink every writing program shares.

Like the real clients, the file is opened for appending only when the first record arrives (a
filter that matches nothing creates no file), and a new or empty file starts with a START MAR:
a byte-for-byte copy of the input's START MAR, or a synthesised one when there is none.
Appending to a file that already has records never adds a second START MAR.
"""

from __future__ import annotations

import os
import sys
from typing import BinaryIO

import numpy as np
import polars as pl

from argusflow.errors import ArgusflowError
from argusflow.records.schema import RTYPE_MAR
from argusflow.records.writer import encode_batch


class OutputError(ArgusflowError):
    """An output file that cannot be opened or written."""


class ArgusOutput:
    def __init__(self, path: str, synthesise_agr: bool = True) -> None:
        self.path = path
        self.synthesise_agr = synthesise_agr
        self._stream: BinaryIO | None = None
        self._owns_stream = False
        self._needs_header = False
        self.records_written = 0

    def write(self, batch: pl.DataFrame, start_mar: bytes | None) -> None:
        """Append a batch; `start_mar` is the current input's START MAR (None if it had none)."""
        if batch.height == 0:
            return
        stream = self._open()
        if self._needs_header:
            header = start_mar or synthesised_start_mar()
            self._emit(stream, header)
            self._needs_header = False
            batch = drop_leading_copy(batch, header)
        self._emit(stream, encode_batch(batch, synthesise_agr=self.synthesise_agr))
        self.records_written += batch.height

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.flush()
            except OSError as err:
                raise OutputError(f"{self.path}: {err.strerror or err}") from None
            if self._owns_stream:
                self._stream.close()
            self._stream = None

    def _open(self) -> BinaryIO:
        if self._stream is not None:
            return self._stream
        if self.path == "-":
            self._stream = sys.stdout.buffer
            self._needs_header = True
            return self._stream
        try:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            self._stream = open(self.path, "ab")  # noqa: SIM115 - closed in close()
            self._owns_stream = True
        except OSError as err:
            raise OutputError(f"{self.path}: cannot open for writing: {err.strerror or err}") from None
        self._needs_header = self._stream.tell() == 0
        return self._stream

    def _emit(self, stream: BinaryIO, data: bytes) -> None:
        try:
            stream.write(data)
        except OSError as err:
            raise OutputError(f"{self.path}: write failed: {err.strerror or err}") from None


def drop_leading_copy(batch: pl.DataFrame, header: bytes) -> pl.DataFrame:
    """The input's START MAR became the file header: do not write it a second time."""
    first_is_header = (
        int(batch["rtype"][0]) == RTYPE_MAR and int(batch["offset"][0]) == 0
        and batch["mar_raw"][0] == header
    )
    return batch.slice(1) if first_is_header else batch


def synthesised_start_mar(now_us: int | None = None) -> bytes:
    """A START MAR for output that has no input MAR to copy (spec §4.4)."""
    import time

    now_us = int(time.time() * 1e6) if now_us is None else now_us
    mar = np.zeros(128, dtype=np.uint8)
    mar[0:4] = (0x83, 0x10, 0x00, 0x20)
    mar[8:12] = (0xE5, 0x71, 0x2D, 0xCB)
    seconds, micros = divmod(now_us, 1_000_000)
    for at in (24, 32):
        mar[at:at + 4] = np.frombuffer(seconds.to_bytes(4, "big"), dtype=np.uint8)
        mar[at + 4:at + 8] = np.frombuffer(micros.to_bytes(4, "big"), dtype=np.uint8)
    mar[40] = 3
    mar[124:128] = 0xFF
    return mar.tobytes()

"""PacketBatch: up to N captured packets as numpy columns over one contiguous byte buffer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class PacketBatch:
    """Packets `i` of a batch: `data[offset[i] : offset[i] + caplen[i]]`.

    `data` is the reader's buffer the packets were read into (record headers included), so
    packets are not necessarily adjacent.  Never mutate it.  With `reuse_buffers=True` the
    reader overwrites it two batches later: copy what must outlive that (`take` + `packet`).
    """

    ts_us: np.ndarray  # int64, microseconds since the epoch
    caplen: np.ndarray  # uint32, bytes captured (what `data` holds)
    wirelen: np.ndarray  # uint32, bytes on the wire (pcap orig_len)
    linktype: np.ndarray  # uint16, LINKTYPE_* per packet
    ifindex: np.ndarray  # uint16, pcapng interface id (0 for classic pcap)
    offset: np.ndarray  # int64, where each packet starts in `data`
    data: np.ndarray  # uint8
    first_index: int = 0  # 0-based number of the first packet in its capture file

    def __len__(self) -> int:
        return len(self.ts_us)

    def take(self, idx: np.ndarray) -> PacketBatch:
        """The packets `idx` (an index array) as a batch over the same bytes."""
        return PacketBatch(
            ts_us=self.ts_us[idx],
            caplen=self.caplen[idx],
            wirelen=self.wirelen[idx],
            linktype=self.linktype[idx],
            ifindex=self.ifindex[idx],
            offset=self.offset[idx],
            data=self.data,
            first_index=self.first_index,
        )

    def packet(self, i: int) -> bytes:
        """One packet's bytes (for tests and debugging; not for hot paths)."""
        start = int(self.offset[i])
        return self.data[start : start + int(self.caplen[i])].tobytes()

    @classmethod
    def from_packets(
        cls,
        packets: list[bytes],
        linktype: int = 1,
        ts_us: list[int] | None = None,
        wirelen: list[int] | None = None,
    ) -> PacketBatch:
        """Build a batch from byte strings: the handy constructor for unit tests."""
        n = len(packets)
        lengths = np.array([len(p) for p in packets], dtype=np.uint32)
        offset = np.zeros(n, dtype=np.int64)
        if n:
            offset[1:] = np.cumsum(lengths[:-1], dtype=np.int64)
        data = np.frombuffer(b"".join(packets), dtype=np.uint8) if n else np.zeros(0, np.uint8)
        return cls(
            ts_us=np.asarray(ts_us if ts_us is not None else np.arange(n), dtype=np.int64),
            caplen=lengths,
            wirelen=np.asarray(wirelen if wirelen is not None else lengths, dtype=np.uint32),
            linktype=np.full(n, linktype, dtype=np.uint16),
            ifindex=np.zeros(n, dtype=np.uint16),
            offset=offset,
            data=data,
        )

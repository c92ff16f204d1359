"""Capture sources: pcap/pcapng readers that stream PacketBatch objects.

    from argusflow.capture import open_capture
    reader = open_capture("trace.pcap.gz")      # or "-" for stdin; format from the magic
    for batch in reader:                        # PacketBatch, up to 16k packets each
        ...
    if reader.error:                            # damage stops reading; good packets came first
        print(reader.error)                     # one line: source, byte offset, problem
    reader.warnings, reader.stats               # oddities that did not stop reading

`open_capture(path, batch_size=16384, buffer_size=8 MiB, reuse_buffers=False)`: a streaming
probe should pass reuse_buffers=True (two buffers alternate, no fresh memory per batch).
"""

from argusflow.capture.batch import PacketBatch
from argusflow.capture.opener import open_capture
from argusflow.capture.pcap_reader import PcapReader
from argusflow.capture.pcapng_reader import PcapngReader
from argusflow.capture.reader import CaptureReader

__all__ = ["CaptureReader", "PacketBatch", "PcapReader", "PcapngReader", "open_capture"]

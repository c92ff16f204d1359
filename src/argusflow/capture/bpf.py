"""Capture filters compiled to kernel BPF by the system's libpcap (`pcap_compile`).

The real argus hands its capture filter (the words after `-`) to libpcap, so compiling it with
the same library gives the same language and the same meaning, and the kernel then drops
unwanted packets before they take room in the ring.  The program's accept instructions return
the snap length, so the kernel also cuts packets to it.  libpcap is loaded with ctypes when a
filter is given; without it `available()` says why and callers fall back to user space.
"""

from __future__ import annotations

import ctypes
import ctypes.util

from argusflow.errors import UsageError

PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF


class BpfInsn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint)]


class BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(BpfInsn))]


_lib: ctypes.CDLL | None = None


def _libpcap() -> ctypes.CDLL | None:
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("pcap")
        if name is None:
            return None
        lib = ctypes.CDLL(name)
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(BpfProgram), ctypes.c_char_p,
                                     ctypes.c_int, ctypes.c_uint]
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_freecode.argtypes = [ctypes.POINTER(BpfProgram)]
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        _lib = lib
    return _lib


def available() -> bool:
    return _libpcap() is not None


def compile_filter(expression: str, linktype: int, snaplen: int) -> list[tuple[int, int, int, int]]:
    """`expression` (tcpdump syntax) as BPF instructions (code, jt, jf, k) for `linktype`."""
    lib = _libpcap()
    if lib is None:
        raise UsageError("capture filter: libpcap not found (needed to compile it)")
    handle = lib.pcap_open_dead(linktype, snaplen)
    if not handle:
        raise UsageError("capture filter: libpcap could not open a compiler handle")
    program = BpfProgram()
    try:
        if lib.pcap_compile(handle, ctypes.byref(program), expression.encode(), 1,
                            PCAP_NETMASK_UNKNOWN) != 0:
            problem = (lib.pcap_geterr(handle) or b"syntax error").decode(errors="replace")
            raise UsageError(f"capture filter '{expression}': {problem}")
        out = [(program.bf_insns[i].code, program.bf_insns[i].jt, program.bf_insns[i].jf,
                program.bf_insns[i].k) for i in range(program.bf_len)]
        lib.pcap_freecode(ctypes.byref(program))
        return out
    finally:
        lib.pcap_close(handle)

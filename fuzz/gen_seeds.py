#!/usr/bin/env python3
"""Generates the seed corpora in fuzz/seeds/<target>/.

Every seed is ONE chunking-control byte (see fuzz_targets/common/mod.rs) followed by a small,
valid capture built here byte by byte (plus two converted by editcap from one of them, so a
real tool's pcapng/nanosecond-pcap output is represented too). Re-run it to regenerate:

    python3 fuzz/gen_seeds.py

The captures (without the control byte) are checked with capinfos/tshark when available.
"""

import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")


# --- packets -----------------------------------------------------------------------------------

def udp_frame(src_last, dst_last, sport, dport, payload):
    """A small Ethernet/IPv4/UDP frame (checksums left 0 except the IPv4 header's)."""
    udp = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip_wo = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                        bytes([10, 0, 0, src_last]), bytes([10, 0, 0, dst_last]))
    s = sum(struct.unpack(">10H", ip_wo))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    ip = ip_wo[:10] + struct.pack(">H", ~s & 0xFFFF) + ip_wo[12:]
    eth = bytes([2, 0, 0, 0, 0, dst_last]) + bytes([2, 0, 0, 0, 0, src_last]) + b"\x08\x00"
    return eth + ip + udp


P1 = udp_frame(1, 2, 40000, 53, b"hello pcap")
P2 = udp_frame(2, 1, 53, 40000, b"and a reply of some length!!")
P3 = udp_frame(3, 4, 1234, 5678, bytes(range(40)))
RAW_IP = P1[14:]  # LINKTYPE_RAW (101) payload
T0 = 1_700_000_000


# --- classic pcap ------------------------------------------------------------------------------

def pcap(endian, nsec, packets, linktype=1, snaplen=262144):
    """packets: list of (secs, frac, data, orig_len or None)."""
    magic = 0xA1B23C4D if nsec else 0xA1B2C3D4
    out = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)
    for secs, frac, data, orig in packets:
        out += struct.pack(endian + "IIII", secs, frac, len(data), orig or len(data)) + data
    return out


# --- pcapng ------------------------------------------------------------------------------------

def pad4(b):
    return b + b"\0" * (-len(b) % 4)


def opts(e, options):
    """options: list of (code, value bytes); adds opt_endofopt when there are any."""
    if not options:
        return b""
    out = b""
    for code, value in options:
        out += struct.pack(e + "HH", code, len(value)) + pad4(value)
    return out + struct.pack(e + "HH", 0, 0)


def block(e, btype, body):
    body = pad4(body)
    n = 12 + len(body)
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def shb(e, options=()):
    return block(e, 0x0A0D0D0A,
                 struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1) + opts(e, list(options)))


def idb(e, linktype, snaplen, options=()):
    return block(e, 1, struct.pack(e + "HHI", linktype, 0, snaplen) + opts(e, list(options)))


def epb(e, iface, ts, data, orig=None, options=()):
    return block(e, 6, struct.pack(e + "IIII I", iface, ts >> 32, ts & 0xFFFFFFFF, len(data),
                                   orig or len(data)) + pad4(data) + opts(e, list(options)))


def spb(e, data, orig=None):
    return block(e, 3, struct.pack(e + "I", orig or len(data)) + data)


def pb(e, iface, ts, data):
    return block(e, 2, struct.pack(e + "HHIIII", iface, 0, ts >> 32, ts & 0xFFFFFFFF,
                                   len(data), len(data)) + pad4(data))


def nrb(e, records):
    body = b""
    for kind, value in records:
        body += struct.pack(e + "HH", kind, len(value)) + pad4(value)
    return block(e, 4, body + struct.pack(e + "HH", 0, 0))


def isb(e, iface, ts, recv, drop):
    return block(e, 5, struct.pack(e + "III", iface, ts >> 32, ts & 0xFFFFFFFF) + opts(e, [
        (2, struct.pack(e + "Q", ts)), (4, struct.pack(e + "Q", recv)),
        (5, struct.pack(e + "Q", drop))]))


def custom(e, pen, data):
    return block(e, 0x00000BAD, struct.pack(e + "I", pen) + data)


def u8(v):
    return bytes([v])


def s(text):
    return text.encode()


def pcapng_full_le():
    e = "<"
    us = (T0 * 1_000_000 + 123_456)
    ns = (T0 * 1_000_000_000 + 987_654_321) - 10 * 1_000_000_000  # if_tsoffset = 10 s below
    b2 = (T0 << 20) | (1 << 19)  # base-2 resolution 2^-20 s: T0 + 0.5 s
    return b"".join([
        shb(e, [(4, s("podcap-merge fuzz seed")), (2, s("x86_64")), (3, s("Linux"))]),
        idb(e, 1, 262144, [(2, s("eth0")), (3, s("pod web-0 / eth0")),
                           (9, u8(9)), (13, u8(0)), (14, struct.pack(e + "q", 10))]),
        idb(e, 101, 64, [(2, s("raw0")), (9, u8(0x80 | 20))]),
        epb(e, 0, ns, P1, options=[(2, struct.pack(e + "I", 1)), (1, s("a comment"))]),
        epb(e, 1, b2, RAW_IP),
        spb(e, P2),
        pb(e, 0, ns + 1000, P3),
        nrb(e, [(1, bytes([10, 0, 0, 1]) + b"web-0\0"),
                (2, bytes(15) + b"\x01" + b"localhost\0")]),
        isb(e, 0, us, 1000, 3),
        custom(e, 32473, b"custom data"),
        block(e, 0x0000000A, struct.pack(e + "II", 0x544C534B, 4) + b"abcd"),  # DSB: skipped
        epb(e, 0, ns + 2000, P2, orig=len(P2) + 100),
    ])


def pcapng_multi_section():
    le, be = "<", ">"
    return b"".join([
        shb(le), idb(le, 1, 0), epb(le, 0, T0 * 1_000_000, P1),
        shb(be, [(4, s("second section, big-endian"))]),
        idb(be, 1, 65535, [(9, u8(3))]), idb(be, 1, 65535),
        epb(be, 1, T0 * 1_000_000 + 5, P2), epb(be, 0, T0 * 1000 + 1, P3),
        isb(be, 1, T0 * 1_000_000 + 9, 2, 0),
    ])


def pcapng_be_small():
    e = ">"
    return shb(e) + idb(e, 1, 262144) + epb(e, 0, T0 * 1_000_000, P1) + \
        epb(e, 0, T0 * 1_000_000 + 77, P2)


# --- output ------------------------------------------------------------------------------------

def check(path, data):
    if not shutil.which("capinfos"):
        return
    with tempfile.NamedTemporaryFile(suffix=".cap") as f:
        f.write(data)
        f.flush()
        r = subprocess.run(["capinfos", "-c", "-M", f.name], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"{path}: capinfos rejects it:\n{r.stdout}{r.stderr}")
        count = [l for l in r.stdout.splitlines() if "Number of packets" in l]
        print(f"  {os.path.relpath(path, HERE)}: {len(data) + 1} bytes, "
              f"{count[0].split(':')[1].strip() if count else '?'} packet(s)")


def editcap(data, fmt):
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in.pcap"), os.path.join(d, "out")
        with open(src, "wb") as f:
            f.write(data)
        subprocess.run(["editcap", "-F", fmt, src, dst], check=True)
        with open(dst, "rb") as f:
            return f.read()


def write(target, name, ctl, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, name)
    with open(path, "wb") as f:
        f.write(bytes([ctl]) + data)
    check(path, data)


def main():
    pkts = [(T0, 123_456, P1, None), (T0, 654_321, P2, None)]
    pkts_ns = [(T0, 123_456_789, P1, None), (T0 + 1, 5, P2, None), (T0 + 1, 6, P3[:32], len(P3))]
    le_usec = pcap("<", False, pkts)
    be_usec = pcap(">", False, pkts)
    le_nsec = pcap("<", True, pkts_ns)
    # link type with the FCS-present flag (bit 28) and 2 × 16-bit words of FCS (bits 26..27)
    be_nsec_fcs = pcap(">", True, pkts_ns, linktype=0x1000_0000 | (2 << 26) | 1, snaplen=32)
    header_only = pcap("<", False, [])

    full = pcapng_full_le()
    multi = pcapng_multi_section()
    be_small = pcapng_be_small()
    editcap_ng = editcap(le_usec, "pcapng") if shutil.which("editcap") else None
    editcap_ns = editcap(be_usec, "nsecpcap") if shutil.which("editcap") else None

    shutil.rmtree(SEEDS, ignore_errors=True)
    write("pcap", "le-usec.whole", 0xFF, le_usec)
    write("pcap", "be-usec.1byte", 0x00, be_usec)
    write("pcap", "le-nsec.varying", 0x47, le_nsec)
    write("pcap", "be-nsec-fcs.64byte", 0x3F, be_nsec_fcs)
    write("pcap", "header-only.17byte", 0x10, header_only)
    if editcap_ns:
        write("pcap", "editcap-nsec.384byte", 0x85, editcap_ns)

    write("pcapng", "full-le.8byte", 0x07, full)
    write("pcapng", "full-le.whole", 0xC0, full)
    write("pcapng", "multi-section.varying", 0x52, multi)
    write("pcapng", "be-small.4096byte", 0xBF, be_small)
    if editcap_ng:
        write("pcapng", "editcap.1byte", 0x00, editcap_ng)

    write("detect", "pcap-le-usec.4byte", 0x03, le_usec)
    write("detect", "pcap-be-nsec-fcs.whole", 0xE0, be_nsec_fcs)
    write("detect", "pcapng-full-le.varying", 0x41, full)
    write("detect", "pcapng-multi-section.33byte", 0x20, multi)
    write("detect", "pcapng-be-small.whole", 0xFF, be_small)
    # a valid capture cut off inside its last block: decode_eof must report the truncation
    trunc = be_small[:-30]
    d = os.path.join(SEEDS, "detect")
    with open(os.path.join(d, "pcapng-truncated.2byte"), "wb") as f:
        f.write(b"\x01" + trunc)
    print(f"  seeds/detect/pcapng-truncated.2byte: {len(trunc) + 1} bytes (deliberately truncated)")


if __name__ == "__main__":
    main()

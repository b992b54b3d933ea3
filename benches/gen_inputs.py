#!/usr/bin/env python3
"""Generate the benchmark inputs: N classic-pcap files (little-endian, microsecond, Ethernet),
P packets each, deterministic (fixed seeds).

Usage: gen_inputs.py DIR FILES PACKETS_PER_FILE

Packet sizes follow a realistic bulk-TCP mix: ~48 % ACK-sized frames (60-66 B), ~37 %
full-MTU segments (1514 B), ~15 % uniform in between. Every frame is a well-formed
Ethernet/IPv4/TCP frame with correct IPv4 total length and header checksum.

Timestamps increase within each file (gaps of 1..15 µs, mean 8 µs) and all files start
within a few µs of each other, so the streams interleave finely across files.

The inputs are reused when DIR/manifest.json says they were made with the same parameters
and every file still has the recorded size; the manifest is written last, so an interrupted
generation is redone. Prints the manifest path.
"""

import json
import os
import random
import struct
import sys

GEN_VERSION = 1  # bump when the content changes, so old inputs are regenerated
T0_SEC = 1_700_000_000
LINKTYPE_ETHERNET = 1
SNAPLEN = 262144


def ip_checksum(hdr: bytes) -> int:
    s = sum(struct.unpack("!10H", hdr))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def make_frame(size: int, file_idx: int) -> bytes:
    """An Ethernet/IPv4/TCP frame of exactly `size` bytes (60..1514)."""
    eth = bytes.fromhex("0242ac110002") + bytes([0x02, 0x42, 0xAC, 0x11, 0x00, 0x10 + file_idx]) + b"\x08\x00"
    ip_len = size - 14
    src = bytes([10, 244, file_idx, 7])
    dst = bytes([10, 96, 0, 10])
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, ip_len, 0x1234, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", ip_checksum(ip)) + ip[12:]
    flags = 0x10 if size <= 66 else 0x18  # ACK, or PSH|ACK with data
    tcp = struct.pack("!HHIIBBHHH", 443, 40000 + file_idx, 1, 1, 0x50, flags, 65535, 0, 0)
    payload_len = size - 14 - 20 - 20
    payload = bytes((i * 7 + file_idx) & 0xFF for i in range(max(payload_len, 0)))
    frame = eth + ip + tcp + payload
    return frame[:size] if len(frame) >= size else frame + b"\x00" * (size - len(frame))


def packet_size(rnd: random.Random) -> int:
    r = rnd.random()
    if r < 0.48:
        return rnd.choice((60, 66, 66))  # bare ACKs (min frame), ACKs with TCP timestamps
    if r < 0.85:
        return 1514
    return rnd.randint(67, 1513)


def gen_file(path: str, file_idx: int, packets: int) -> dict:
    rnd = random.Random(0x9C4A + file_idx * 7919)
    frames = {}
    # Start times within a few µs of each other: the files interleave from the first packet.
    t_us = T0_SEC * 1_000_000 + file_idx
    out = bytearray()
    out += struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET)
    data_bytes = 0
    first = last = None
    pack_hdr = struct.Struct("<IIII").pack
    randint = rnd.randint
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        for _ in range(packets):
            t_us += randint(1, 15)
            size = packet_size(rnd)
            fr = frames.get(size)
            if fr is None:
                fr = frames[size] = make_frame(size, file_idx)
            out += pack_hdr(t_us // 1_000_000, t_us % 1_000_000, size, size)
            out += fr
            data_bytes += size
            if first is None:
                first = t_us
            last = t_us
            if len(out) >= 1 << 22:
                f.write(out)
                out.clear()
        f.write(out)
    os.replace(tmp, path)
    return {
        "path": os.path.basename(path),
        "size": os.path.getsize(path),
        "packets": packets,
        "data_bytes": data_bytes,
        "first_us": first,
        "last_us": last,
    }


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    d, nfiles, per_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    os.makedirs(d, exist_ok=True)
    manifest_path = os.path.join(d, "manifest.json")
    params = {"version": GEN_VERSION, "files": nfiles, "packets_per_file": per_file}
    try:
        with open(manifest_path) as f:
            m = json.load(f)
        if m.get("params") == params and all(
            os.path.getsize(os.path.join(d, e["path"])) == e["size"] for e in m["inputs"]
        ):
            print(manifest_path)
            return 0
    except (OSError, ValueError, KeyError):
        pass
    try:
        os.remove(manifest_path)
    except OSError:
        pass
    inputs = []
    for i in range(nfiles):
        inputs.append(gen_file(os.path.join(d, f"in{i}.pcap"), i, per_file))
        print(f"  generated {inputs[-1]['path']}: {inputs[-1]['size']} bytes", file=sys.stderr)
    m = {
        "params": params,
        "inputs": inputs,
        "total_size": sum(e["size"] for e in inputs),
        "total_packets": sum(e["packets"] for e in inputs),
        "total_data_bytes": sum(e["data_bytes"] for e in inputs),
    }
    with open(manifest_path + ".tmp", "w") as f:
        json.dump(m, f, indent=1)
    os.replace(manifest_path + ".tmp", manifest_path)
    print(manifest_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

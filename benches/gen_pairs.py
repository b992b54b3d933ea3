#!/usr/bin/env python3
"""Generate a corpus with real pairs: N classic-pcap files (little-endian, microsecond, Linux
SLL2 as `tcpdump -i any` writes), P packets each, deterministic (fixed seeds). Files 2k and
2k+1 are the captures of two pods talking to each other: every packet is in both files, in the
sender's as outgoing at its sending time and in the receiver's as incoming 20-80 us later.

Usage: gen_pairs.py DIR FILES PACKETS_PER_FILE      (FILES even)

Each pair holds one TCP connection: the client (file 2k) sends bulk data in 1448-byte
segments, the server (file 2k+1) acknowledges every second one (66-byte frames with TCP
timestamps) and answers every 16th with a 300-byte segment. IPv4 identifications count up per
sender, sequence and acknowledgement numbers progress as TCP's do. Timestamps of the pair's
packets are 1..15 us apart (mean 8 us), so a file interleaves its own and its peer's packets
(and the pairs interleave with each other, all starting within a few us).

The inputs are reused when DIR/manifest.json says they were made with the same parameters and
every file still has the recorded size (the manifest is written last). Prints the manifest
path. The manifest records `pairs`: how many packets are in two files (all of them).
"""

import json
import os
import random
import struct
import sys

GEN_VERSION = 1
T0_SEC = 1_700_000_000
LINKTYPE_LINUX_SLL2 = 276
SNAPLEN = 262144
MSS = 1448


def ip_checksum(hdr: bytes) -> int:
    s = sum(struct.unpack("!10H", hdr))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def sll2(outgoing: bool) -> bytes:
    # protocol, reserved, ifindex, hatype (ARPHRD_ETHER), pkttype, halen, address
    return struct.pack("!HHIHBB8s", 0x0800, 0, 2, 1, 4 if outgoing else 0, 6, b"\x02\x42\xac\x11\x00\x02\x00\x00")


def tcp_ip(src, dst, sport, dport, ip_id, seq, ack, flags, tsval, tsecr, payload):
    opts = struct.pack("!BBBBII", 1, 1, 8, 10, tsval, tsecr)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (20 + len(opts)) // 4 << 4, flags, 501, 0, 0) + opts
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, ip_id, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", ip_checksum(ip)) + ip[12:]
    return ip + tcp + payload


def gen_pair(d: str, k: int, packets: int):
    rnd = random.Random(0x51A7 + k * 104729)
    client, server = bytes([10, 244, k, 10]), bytes([10, 244, k, 11])
    cport, sport = 40000 + k, 8080
    cseq, sseq = rnd.getrandbits(32), rnd.getrandbits(32)
    cid, sid = rnd.getrandbits(16), rnd.getrandbits(16)
    data = bytes((i * 7 + k) & 0xFF for i in range(MSS))
    answer = bytes((i * 13 + k) & 0xFF for i in range(300))
    t_us = T0_SEC * 1_000_000 + k
    recs = ([], [])  # (ts_us, outgoing, ip packet) per side: 0 client, 1 server
    n = 0
    i = 0
    while n < packets:
        i += 1
        t_us += rnd.randint(1, 15)
        tsval = (t_us // 1000) & 0xFFFFFFFF
        if i % 3 == 0:
            # the server acknowledges (and every 16th time answers with data)
            pl = answer if i % 48 == 0 else b""
            pkt = tcp_ip(server, client, sport, cport, sid, sseq, cseq, 0x18 if pl else 0x10, tsval, tsval, pl)
            sid = (sid + 1) & 0xFFFF
            sseq = (sseq + len(pl)) & 0xFFFFFFFF
            sender = 1
        else:
            pkt = tcp_ip(client, server, cport, sport, cid, cseq, sseq, 0x10, tsval, tsval, data)
            cid = (cid + 1) & 0xFFFF
            cseq = (cseq + MSS) & 0xFFFFFFFF
            sender = 0
        lat = rnd.randint(20, 80)
        recs[sender].append((t_us, True, pkt))
        recs[1 - sender].append((t_us + lat, False, pkt))
        n += 1
    out = []
    for side in (0, 1):
        path = os.path.join(d, f"pair{k}{'cs'[side]}.pcap")
        r = sorted(recs[side], key=lambda x: x[0])
        buf = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_LINUX_SLL2))
        data_bytes = 0
        for ts, outgoing, pkt in r:
            frame = sll2(outgoing) + pkt
            buf += struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(frame), len(frame))
            buf += frame
            data_bytes += len(frame)
        with open(path + ".tmp", "wb") as f:
            f.write(buf)
        os.replace(path + ".tmp", path)
        out.append({"path": os.path.basename(path), "size": os.path.getsize(path), "packets": len(r), "data_bytes": data_bytes})
    return out


def main() -> int:
    if len(sys.argv) != 4 or int(sys.argv[2]) % 2:
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
    for k in range(nfiles // 2):
        inputs += gen_pair(d, k, per_file)
        print(f"  generated pair {k}: {inputs[-2]['size'] + inputs[-1]['size']} bytes", file=sys.stderr)
    m = {
        "params": params,
        "inputs": inputs,
        "total_size": sum(e["size"] for e in inputs),
        "total_packets": sum(e["packets"] for e in inputs),
        "total_data_bytes": sum(e["data_bytes"] for e in inputs),
        "pairs": sum(e["packets"] for e in inputs) // 2,
    }
    with open(manifest_path + ".tmp", "w") as f:
        json.dump(m, f, indent=1)
    os.replace(manifest_path + ".tmp", manifest_path)
    print(manifest_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

//! Synthetic capture for the test cluster without root (no network namespaces, and a real
//! tcpdump could not capture without CAP_NET_RAW): the kubelet puts a `tcpdump` shim first in
//! the PATH of every pod process, which runs `<this binary> __podcap-synthetic-tcpdump ARGS…`.
//! Both binaries call [`main_if_invoked`] first thing in `main`.
//!
//! The synthetic tcpdump takes tcpdump's command line (`-i IFACE`, `-s SNAPLEN`, `-w -`,
//! `--time-stamp-precision=nano|micro`, `-U`, `--immediate-mode`, `-p`, `-c N`, a filter after
//! `--`, which is accepted and ignored) and writes a classic pcap stream to stdout: HTTP/1.1
//! exchanges over IPv4/TCP (handshake, a GET, a 200 response, FIN/ACK teardown; correct IP and
//! TCP checksums, consistent seq/ack) between this pod's IP (`PODCAP_POD_IP`) and the other pods'
//! (`PODCAP_PEER_IPS`, comma- or space-separated), about 33 packets/s, timestamped with the real
//! time (shifted by the node's `--clock-offset`, `PODCAP_CLOCK_OFFSET_NS`), each packet flushed
//! as written. SIGTERM/SIGINT, a closed stdout or `-c N` end it with
//! tcpdump's three count lines on stderr.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The hidden first argument under which a binary acts as the synthetic tcpdump.
pub const ARG: &str = "__podcap-synthetic-tcpdump";

/// Environment variable with the pod's own IP.
pub const ENV_POD_IP: &str = "PODCAP_POD_IP";
/// Environment variable with the other pods' IPs (comma- or space-separated).
pub const ENV_PEER_IPS: &str = "PODCAP_PEER_IPS";

/// LINKTYPE_ETHERNET.
pub const LINKTYPE_EN10MB: u32 = 1;
/// LINKTYPE_LINUX_SLL2.
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

/// tcpdump's default snapshot length.
pub const DEFAULT_SNAPLEN: u32 = 262_144;

/// Interval between two packets (~33 packets/s).
const PACKET_INTERVAL: Duration = Duration::from_millis(30);

/// When the process was started as the synthetic tcpdump, runs it and returns its exit code.
/// (The clock-offset shim of [`super::offset`] is dispatched here too.)
pub fn main_if_invoked() -> Option<std::process::ExitCode> {
    let mut args = std::env::args_os();
    let first = args.nth(1)?;
    let shim = if first == ARG {
        run
    } else if first == super::offset::ARG {
        super::offset::run
    } else {
        return None;
    };
    let args: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
    Some(std::process::ExitCode::from(shim(&args)))
}

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `-i`: `any` (the default here) → LINUX_SLL2, anything else → EN10MB.
    pub interface: String,
    /// `-s`: 0 means the default, 262144.
    pub snaplen: u32,
    /// `-w`: only `-` (stdout) is supported.
    pub write: Option<String>,
    /// `--time-stamp-precision=nano`.
    pub nano: bool,
    /// `-c N`.
    pub count: Option<u64>,
    /// The filter words (accepted, ignored).
    pub filter: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            interface: "any".into(),
            snaplen: DEFAULT_SNAPLEN,
            write: None,
            nano: false,
            count: None,
            filter: Vec::new(),
        }
    }
}

/// Short options that take no argument (accepted and ignored).
const SHORT_FLAGS: &str = "UpnqvlSKtxXAeNO#D";

/// Parses tcpdump's arguments (a subset; `Err` holds tcpdump-like message text).
pub fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut i = 0;
    let value = |i: &mut usize, opt: &str| -> Result<String, String> {
        *i += 1;
        args.get(*i)
            .cloned()
            .ok_or_else(|| format!("option requires an argument -- '{opt}'"))
    };
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--" {
            o.filter.extend(args[i + 1..].iter().cloned());
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let val = |i: &mut usize| match &inline {
                Some(v) => Ok(v.clone()),
                None => value(i, name),
            };
            match name {
                "time-stamp-precision" => {
                    o.nano = match val(&mut i)?.as_str() {
                        "nano" => true,
                        "micro" => false,
                        other => return Err(format!("unsupported time stamp precision {other}")),
                    }
                }
                "interface" => o.interface = val(&mut i)?,
                "snapshot-length" => o.snaplen = parse_snaplen(&val(&mut i)?)?,
                "immediate-mode" | "no-promiscuous-mode" | "packet-buffered" | "nano" => {
                    if name == "nano" {
                        o.nano = true;
                    }
                }
                "micro" => o.nano = false,
                _ => return Err(format!("unrecognized option '--{name}'")),
            }
        } else if a.len() > 1 && a.starts_with('-') {
            let chars: Vec<char> = a[1..].chars().collect();
            let mut k = 0;
            while k < chars.len() {
                let c = chars[k];
                if SHORT_FLAGS.contains(c) {
                    k += 1;
                    continue;
                }
                if !"iswcB".contains(c) {
                    return Err(format!("invalid option -- '{c}'"));
                }
                // The rest of the word, or the next argument, is the value.
                let rest: String = chars[k + 1..].iter().collect();
                let v = if rest.is_empty() {
                    value(&mut i, &c.to_string())?
                } else {
                    rest
                };
                match c {
                    'i' => o.interface = v,
                    's' => o.snaplen = parse_snaplen(&v)?,
                    'w' => o.write = Some(v),
                    'c' => {
                        o.count = Some(
                            v.parse::<u64>()
                                .ok()
                                .filter(|n| *n > 0)
                                .ok_or_else(|| format!("invalid packet count {v}"))?,
                        )
                    }
                    _ => {} // -B buffer size
                }
                break;
            }
        } else {
            // A filter without `--`.
            o.filter.extend(args[i..].iter().cloned());
            break;
        }
        i += 1;
    }
    Ok(o)
}

fn parse_snaplen(v: &str) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(0) => Ok(DEFAULT_SNAPLEN),
        Ok(n) if n <= DEFAULT_SNAPLEN => Ok(n),
        Ok(_) => Ok(DEFAULT_SNAPLEN),
        Err(_) => Err(format!("invalid snaplen {v}")),
    }
}

/// The link type for interface `iface`.
pub fn linktype(iface: &str) -> u32 {
    if iface == "any" {
        LINKTYPE_LINUX_SLL2
    } else {
        LINKTYPE_EN10MB
    }
}

/// The 24-byte pcap file header (little endian, like tcpdump on x86).
pub fn pcap_header(linktype: u32, nano: bool, snaplen: u32) -> Vec<u8> {
    let magic: u32 = if nano { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
    let mut v = Vec::with_capacity(24);
    v.extend_from_slice(&magic.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    v.extend_from_slice(&0i32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&snaplen.to_le_bytes());
    v.extend_from_slice(&linktype.to_le_bytes());
    v
}

/// One pcap record: header + `frame` cut to `snaplen`.
pub fn pcap_record(ts: Duration, nano: bool, snaplen: u32, frame: &[u8]) -> Vec<u8> {
    let incl = frame.len().min(snaplen as usize);
    let frac = if nano {
        ts.subsec_nanos()
    } else {
        ts.subsec_micros()
    };
    let mut v = Vec::with_capacity(16 + incl);
    // pcap seconds are 32 bits (until 2106).
    v.extend_from_slice(&(ts.as_secs() as u32).to_le_bytes());
    v.extend_from_slice(&frac.to_le_bytes());
    v.extend_from_slice(&(incl as u32).to_le_bytes());
    v.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    v.extend_from_slice(&frame[..incl]);
    v
}

/// The Internet checksum (RFC 1071) of `data`, starting from the partial sum `sum`.
fn checksum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn checksum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The Internet checksum of `data` (0 when `data` already holds a correct checksum).
pub fn internet_checksum(data: &[u8]) -> u16 {
    checksum_fold(checksum_add(0, data))
}

/// TCP flags.
pub mod flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// One TCP segment to encode.
#[derive(Debug, Clone)]
pub struct Segment<'a> {
    /// Source address and port.
    pub src: (Ipv4Addr, u16),
    /// Destination address and port.
    pub dst: (Ipv4Addr, u16),
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (0 without ACK).
    pub ack: u32,
    /// Flags ([`flags`]).
    pub flags: u8,
    /// IP identification.
    pub ip_id: u16,
    /// Payload.
    pub payload: &'a [u8],
}

/// An IPv4 packet (20-byte header, DF, TTL 64) carrying the TCP segment (20-byte header, or 24
/// with an MSS option on SYNs), both checksums set.
pub fn ipv4_tcp(s: &Segment<'_>) -> Vec<u8> {
    let mut tcp = Vec::with_capacity(24 + s.payload.len());
    tcp.extend_from_slice(&s.src.1.to_be_bytes());
    tcp.extend_from_slice(&s.dst.1.to_be_bytes());
    tcp.extend_from_slice(&s.seq.to_be_bytes());
    tcp.extend_from_slice(&s.ack.to_be_bytes());
    let syn = s.flags & flags::SYN != 0;
    let header_words: u8 = if syn { 6 } else { 5 };
    tcp.push(header_words << 4);
    tcp.push(s.flags);
    tcp.extend_from_slice(&64_240u16.to_be_bytes()); // window
    tcp.extend_from_slice(&[0, 0]); // checksum
    tcp.extend_from_slice(&[0, 0]); // urgent pointer
    if syn {
        tcp.extend_from_slice(&[2, 4]); // MSS 1460
        tcp.extend_from_slice(&1460u16.to_be_bytes());
    }
    tcp.extend_from_slice(s.payload);
    let tcp_len = tcp.len() as u16;
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&s.src.0.octets());
    pseudo.extend_from_slice(&s.dst.0.octets());
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&tcp_len.to_be_bytes());
    let sum = checksum_fold(checksum_add(checksum_add(0, &pseudo), &tcp));
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());

    let total = 20 + tcp.len();
    let mut ip = Vec::with_capacity(total);
    ip.push(0x45);
    ip.push(0);
    ip.extend_from_slice(&(total as u16).to_be_bytes());
    ip.extend_from_slice(&s.ip_id.to_be_bytes());
    ip.extend_from_slice(&0x4000u16.to_be_bytes()); // DF
    ip.push(64);
    ip.push(6);
    ip.extend_from_slice(&[0, 0]);
    ip.extend_from_slice(&s.src.0.octets());
    ip.extend_from_slice(&s.dst.0.octets());
    let sum = internet_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&tcp);
    ip
}

/// The MAC a pod with IP `ip` has (the `0a:58` + IP scheme of Kubernetes bridge CNIs).
pub fn pod_mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x0a, 0x58, o[0], o[1], o[2], o[3]]
}

/// The frame as captured on `linktype` by the pod with IP `own` (EN10MB: Ethernet; SLL2:
/// cooked header, outgoing when the packet comes from `own`).
pub fn frame(linktype: u32, own: Ipv4Addr, ip_packet: &[u8]) -> Vec<u8> {
    let src = Ipv4Addr::new(ip_packet[12], ip_packet[13], ip_packet[14], ip_packet[15]);
    let dst = Ipv4Addr::new(ip_packet[16], ip_packet[17], ip_packet[18], ip_packet[19]);
    let mut f = Vec::with_capacity(20 + ip_packet.len());
    if linktype == LINKTYPE_LINUX_SLL2 {
        f.extend_from_slice(&0x0800u16.to_be_bytes()); // protocol
        f.extend_from_slice(&[0, 0]); // reserved
        f.extend_from_slice(&2u32.to_be_bytes()); // interface index (eth0)
        f.extend_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
        let outgoing = src == own;
        f.push(if outgoing { 4 } else { 0 }); // PACKET_OUTGOING / PACKET_HOST
        f.push(6);
        f.extend_from_slice(&pod_mac(src));
        f.extend_from_slice(&[0, 0]);
    } else {
        f.extend_from_slice(&pod_mac(dst));
        f.extend_from_slice(&pod_mac(src));
        f.extend_from_slice(&0x0800u16.to_be_bytes());
    }
    f.extend_from_slice(ip_packet);
    f
}

/// A small xorshift generator (no crate needed for synthetic traffic).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Produces the packets (IPv4) of HTTP exchanges between `own` and its peers, in turn as client
/// (GET to a peer's port 80) and as server (a peer's GET to `own`'s port 80).
#[derive(Debug, Clone)]
pub struct Traffic {
    own: Ipv4Addr,
    peers: Vec<Ipv4Addr>,
    rng: Rng,
    exchange: u64,
    ip_id: u16,
    pending: std::collections::VecDeque<Vec<u8>>,
}

impl Traffic {
    /// Traffic of the pod with IP `own` with `peers` (none: a made-up neighbour), `seed` for
    /// ports and sequence numbers.
    pub fn new(own: Ipv4Addr, peers: Vec<Ipv4Addr>, seed: u64) -> Traffic {
        let peers: Vec<Ipv4Addr> = peers.into_iter().filter(|p| *p != own).collect();
        let peers = if peers.is_empty() {
            let o = own.octets();
            vec![Ipv4Addr::new(o[0], o[1], o[2], o[3].wrapping_add(1).max(1))]
        } else {
            peers
        };
        Traffic {
            own,
            peers,
            rng: Rng(seed | 1),
            exchange: 0,
            ip_id: (seed >> 16) as u16,
            pending: Default::default(),
        }
    }

    /// The next IPv4 packet.
    pub fn next_packet(&mut self) -> Vec<u8> {
        if self.pending.is_empty() {
            self.new_exchange();
        }
        self.pending.pop_front().unwrap_or_default()
    }

    fn new_exchange(&mut self) {
        let n = self.exchange;
        self.exchange += 1;
        let peer = self.peers[(n / 2) as usize % self.peers.len()];
        let (client, server) = if n.is_multiple_of(2) {
            (self.own, peer)
        } else {
            (peer, self.own)
        };
        let cport = 32_768 + (self.rng.next() % 28_000) as u16;
        let c = (client, cport);
        let s = (server, 80u16);
        let mut cseq = self.rng.next() as u32;
        let mut sseq = self.rng.next() as u32;
        let request = format!(
            "GET /index.html HTTP/1.1\r\nHost: {server}\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
        );
        let body = format!(
            "<!DOCTYPE html>\n<html><head><title>mando</title></head><body><p>served by {server} to {client}, exchange {n}</p></body></html>\n"
        );
        let response = format!(
            "HTTP/1.1 200 OK\r\nServer: nginx/1.25.5\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        use flags::{ACK, FIN, PSH, SYN};
        let mut out = Vec::new();
        let mut seg = |from_client: bool, seq: u32, ack: u32, fl: u8, payload: &[u8]| {
            let (src, dst) = if from_client { (c, s) } else { (s, c) };
            self.ip_id = self.ip_id.wrapping_add(1);
            out.push(ipv4_tcp(&Segment {
                src,
                dst,
                seq,
                ack,
                flags: fl,
                ip_id: self.ip_id,
                payload,
            }));
        };
        seg(true, cseq, 0, SYN, b"");
        cseq = cseq.wrapping_add(1);
        seg(false, sseq, cseq, SYN | ACK, b"");
        sseq = sseq.wrapping_add(1);
        seg(true, cseq, sseq, ACK, b"");
        seg(true, cseq, sseq, PSH | ACK, request.as_bytes());
        cseq = cseq.wrapping_add(request.len() as u32);
        seg(false, sseq, cseq, ACK, b"");
        seg(false, sseq, cseq, PSH | ACK, response.as_bytes());
        sseq = sseq.wrapping_add(response.len() as u32);
        seg(true, cseq, sseq, ACK, b"");
        seg(false, sseq, cseq, FIN | ACK, b"");
        sseq = sseq.wrapping_add(1);
        seg(true, cseq, sseq, FIN | ACK, b"");
        cseq = cseq.wrapping_add(1);
        seg(false, sseq, cseq, ACK, b"");
        self.pending.extend(out);
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn ip_from_env(name: &str) -> Vec<Ipv4Addr> {
    std::env::var(name)
        .unwrap_or_default()
        .split([',', ' '])
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        "packet"
    } else {
        "packets"
    }
}

/// Runs the synthetic tcpdump with `args` (after [`ARG`]); the exit code.
pub fn run(args: &[String]) -> u8 {
    let opts = match parse_args(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tcpdump: {e}");
            return 1;
        }
    };
    if !matches!(opts.interface.as_str(), "any" | "eth0" | "lo") {
        eprintln!("tcpdump: {}: No such device exists", opts.interface);
        return 1;
    }
    if opts.write.as_deref() != Some("-") {
        eprintln!(
            "tcpdump: the synthetic capture of the test cluster (no root) writes only pcap to stdout: use -w -"
        );
        return 1;
    }
    let own = ip_from_env(ENV_POD_IP)
        .into_iter()
        .next()
        .unwrap_or(Ipv4Addr::new(10, 213, 0, 10));
    let mut peers = ip_from_env(ENV_PEER_IPS);
    if peers.is_empty() {
        let o = own.octets();
        peers.push(Ipv4Addr::new(10, 213, 0, if o[3] == 11 { 12 } else { 11 }));
    }
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 20)
        ^ u64::from(u32::from(own));
    let mut traffic = Traffic::new(own, peers, seed);
    let clock_offset = super::offset::offset_from_env();
    if opts.interface == "lo" {
        // `lo` sees the pod talking to itself.
        traffic.peers = vec![own];
    }

    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
    let lt = linktype(&opts.interface);
    let lt_name = if lt == LINKTYPE_LINUX_SLL2 {
        "LINUX_SLL2 (Linux cooked v2)"
    } else {
        "EN10MB (Ethernet)"
    };
    eprintln!(
        "tcpdump: listening on {}, link-type {lt_name}, snapshot length {} bytes",
        opts.interface, opts.snaplen
    );
    let mut out = std::io::stdout().lock();
    let mut captured: u64 = 0;
    let mut ok = out
        .write_all(&pcap_header(lt, opts.nano, opts.snaplen))
        .and_then(|()| out.flush())
        .is_ok();
    while ok && !STOP.load(Ordering::SeqCst) && opts.count.is_none_or(|c| captured < c) {
        std::thread::sleep(PACKET_INTERVAL);
        if STOP.load(Ordering::SeqCst) {
            break;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // The node's clock, off by its offset (`--clock-offset`).
        let (secs, nanos) =
            super::offset::shift(now.as_secs() as u32, now.subsec_nanos(), true, clock_offset);
        let ts = Duration::new(u64::from(secs), nanos);
        let f = frame(lt, own, &traffic.next_packet());
        let rec = pcap_record(ts, opts.nano, opts.snaplen, &f);
        ok = out.write_all(&rec).and_then(|()| out.flush()).is_ok();
        if ok {
            captured += 1;
        }
    }
    drop(out);
    eprintln!(
        "{captured} {} captured\n{captured} {} received by filter\n0 packets dropped by kernel",
        plural(captured),
        plural(captured)
    );
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_podcap_merges_command_line() {
        let o = parse_args(&s(&[
            "-i",
            "any",
            "-U",
            "--immediate-mode",
            "--time-stamp-precision=nano",
            "-p",
            "-s",
            "96",
            "-w",
            "-",
            "--",
            "tcp",
            "port",
            "80",
        ]))
        .expect("parse");
        assert_eq!(o.interface, "any");
        assert!(o.nano);
        assert_eq!(o.snaplen, 96);
        assert_eq!(o.write.as_deref(), Some("-"));
        assert_eq!(o.filter, s(&["tcp", "port", "80"]));
        let o = parse_args(&s(&["-ieth0", "-c", "5", "-Uw", "-", "icmp"])).expect("parse");
        assert_eq!(
            (o.interface.as_str(), o.count, o.nano, o.snaplen),
            ("eth0", Some(5), false, DEFAULT_SNAPLEN)
        );
        assert_eq!(o.filter, s(&["icmp"]));
        assert!(parse_args(&s(&["-c", "x"])).is_err());
        assert!(parse_args(&s(&["-s"])).is_err());
        assert!(parse_args(&s(&["-Z"])).is_err());
        assert!(parse_args(&s(&["--time-stamp-precision=pico"])).is_err());
    }

    #[test]
    fn checksums_verify_and_seq_ack_chain() {
        let own = Ipv4Addr::new(10, 244, 0, 5);
        let mut t = Traffic::new(own, vec![Ipv4Addr::new(10, 244, 1, 7)], 42);
        for _ in 0..30 {
            let p = t.next_packet();
            assert_eq!(internet_checksum(&p[..20]), 0, "IP header checksum");
            let mut pseudo = Vec::new();
            pseudo.extend_from_slice(&p[12..20]);
            pseudo.extend_from_slice(&[0, 6]);
            pseudo.extend_from_slice(&((p.len() - 20) as u16).to_be_bytes());
            pseudo.extend_from_slice(&p[20..]);
            assert_eq!(internet_checksum(&pseudo), 0, "TCP checksum");
            assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), p.len());
        }
    }
}

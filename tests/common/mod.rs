//! Shared test helpers: real peer tools (tshark, capinfos, mergecap, tcpdump), our own capture
//! vectors, and the location of the shared conformance data.
#![allow(dead_code)]

pub mod cluster;

use bytes::BytesMut;
use podcap_format::{CaptureDecoder, Decoder as _, Record};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Our binary, built by cargo for integration tests.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_podcap-merge"))
}

/// Runs a peer tool; a missing tool is a failure (with the fix), never a silent skip.
pub fn tool(name: &str) -> Command {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed: run .ci/run, or apt-get install -y tshark tcpdump wireshark-common"
    );
    Command::new(name)
}

/// Lines a peer printed on stderr, without tshark's harmless note about running as root.
pub fn warnings(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.contains("Running as user \"root\""))
        .map(str::to_owned)
        .collect()
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One packet as tshark sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TsharkPacket {
    /// nanoseconds since the epoch; None when the frame has no timestamp (SPB)
    pub ts: Option<u64>,
    pub len: u32,
    pub cap_len: u32,
    pub iface_id: u32,
    pub iface_name: String,
    pub bytes: String,
}

/// Parses "1340954905.298858000" into nanoseconds.
pub fn parse_epoch(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let mut frac = frac.to_string();
    while frac.len() < 9 {
        frac.push('0');
    }
    Some(secs.parse::<u64>().unwrap() * 1_000_000_000 + frac[..9].parse::<u64>().unwrap())
}

/// Reads a capture with tshark (`-T json -x`); asserts tshark printed no warning. Only frames
/// that are packets (not custom or secrets blocks) are returned.
pub fn tshark_packets(path: &Path) -> Vec<TsharkPacket> {
    let out = run_ok(
        tool("tshark")
            .arg("-r")
            .arg(path)
            .args(["-T", "json", "-x", "-j", "frame"]),
    );
    assert_eq!(
        warnings(&out.stderr),
        Vec::<String>::new(),
        "tshark warned on {}",
        path.display()
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("tshark json");
    // `-j frame` hides the interface-name subtree: take names from a fields run.
    let names = run_ok(tool("tshark").arg("-r").arg(path).args([
        "-T",
        "fields",
        "-e",
        "frame.number",
        "-e",
        "frame.interface_name",
    ]));
    let names: std::collections::HashMap<String, String> = String::from_utf8_lossy(&names.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(n, name)| (n.to_string(), name.to_string()))
        .collect();
    let mut v = Vec::new();
    for pkt in doc.as_array().expect("array") {
        let layers = &pkt["_source"]["layers"];
        let frame = &layers["frame"];
        let field = |k: &str| frame[k].as_str().unwrap_or("").to_string();
        // Custom and secrets blocks show as frames with neither an interface nor a time;
        // classic pcap packets have a time but no interface id (it is 0).
        if field("frame.interface_id").is_empty() && field("frame.time_epoch").is_empty() {
            continue;
        }
        v.push(TsharkPacket {
            ts: parse_epoch(&field("frame.time_epoch")),
            len: field("frame.len").parse().unwrap(),
            cap_len: field("frame.cap_len").parse().unwrap(),
            iface_id: field("frame.interface_id").parse().unwrap_or(0),
            iface_name: names
                .get(&field("frame.number"))
                .cloned()
                .unwrap_or_default(),
            bytes: layers["frame_raw"][0].as_str().unwrap_or("").to_string(),
        });
    }
    v
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// capinfos must read the file with no warning.
pub fn capinfos_clean(path: &Path) -> String {
    let out = run_ok(tool("capinfos").arg(path));
    assert_eq!(
        warnings(&out.stderr),
        Vec::<String>::new(),
        "capinfos warned on {}",
        path.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where the shared conformance data is: `$PODCAP_SHARED_DIR`, default `../shared`.
/// Returns None (after saying so loudly on stderr) when it is absent.
pub fn shared_dir() -> Option<PathBuf> {
    let explicit = std::env::var_os("PODCAP_SHARED_DIR");
    let dir = explicit
        .clone()
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        explicit.is_none(),
        "PODCAP_SHARED_DIR={} does not exist",
        dir.display()
    );
    eprintln!(
        "\n!!!!! WARNING: shared conformance data not found at {} (set PODCAP_SHARED_DIR); \
         the tests on our own vectors still run !!!!!\n",
        dir.display()
    );
    None
}

pub fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Writes pcapng blocks in either byte order: our own vectors for big-endian, multi-section
/// and odd-resolution captures.
pub struct Ng {
    pub be: bool,
    pub out: Vec<u8>,
}

impl Ng {
    pub fn new(be: bool) -> Self {
        Self {
            be,
            out: Vec::new(),
        }
    }
    pub fn u16(&self, v: u16) -> [u8; 2] {
        if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    pub fn u32(&self, v: u32) -> [u8; 4] {
        if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    pub fn u64(&self, v: u64) -> [u8; 8] {
        if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    pub fn opt(&self, code: u16, val: &[u8]) -> Vec<u8> {
        let mut o = Vec::new();
        o.extend(self.u16(code));
        o.extend(self.u16(val.len() as u16));
        o.extend(val);
        while o.len() % 4 != 0 {
            o.push(0);
        }
        o
    }
    pub fn end(&self) -> Vec<u8> {
        vec![0; 4]
    }
    pub fn block(&mut self, kind: u32, body: &[u8]) -> &mut Self {
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let len = (body.len() + 12) as u32;
        let k = self.u32(kind);
        let l = self.u32(len);
        self.out.extend(k);
        self.out.extend(l);
        self.out.extend(&body);
        self.out.extend(l);
        self
    }
    pub fn shb(&mut self) -> &mut Self {
        let mut b = Vec::new();
        b.extend(self.u32(0x1A2B3C4D));
        b.extend(self.u16(1));
        b.extend(self.u16(0));
        b.extend(self.u64(u64::MAX));
        b.extend(self.opt(4, b"podcap-merge test vectors"));
        b.extend(self.end());
        self.block(0x0A0D0D0A, &b)
    }
    pub fn idb(
        &mut self,
        link: u16,
        snap: u32,
        name: &str,
        tsresol: Option<u8>,
        tsoffset: Option<i64>,
    ) -> &mut Self {
        let mut b = Vec::new();
        b.extend(self.u16(link));
        b.extend(self.u16(0));
        b.extend(self.u32(snap));
        if !name.is_empty() {
            b.extend(self.opt(2, name.as_bytes()));
        }
        if let Some(r) = tsresol {
            b.extend(self.opt(9, &[r]));
        }
        if let Some(o) = tsoffset {
            b.extend(self.opt(14, &self.u64(o as u64)));
        }
        b.extend(self.end());
        self.block(1, &b)
    }
    pub fn epb(
        &mut self,
        iface: u32,
        raw_ts: u64,
        data: &[u8],
        orig: u32,
        flags: Option<u32>,
    ) -> &mut Self {
        let mut b = Vec::new();
        b.extend(self.u32(iface));
        b.extend(self.u32((raw_ts >> 32) as u32));
        b.extend(self.u32(raw_ts as u32));
        b.extend(self.u32(data.len() as u32));
        b.extend(self.u32(orig));
        b.extend(data);
        while b.len() % 4 != 0 {
            b.push(0);
        }
        if let Some(f) = flags {
            b.extend(self.opt(2, &self.u32(f)));
            b.extend(self.end());
        }
        self.block(6, &b)
    }
    pub fn pb(&mut self, iface: u16, raw_ts: u64, data: &[u8]) -> &mut Self {
        let mut b = Vec::new();
        b.extend(self.u16(iface));
        b.extend(self.u16(0));
        b.extend(self.u32((raw_ts >> 32) as u32));
        b.extend(self.u32(raw_ts as u32));
        b.extend(self.u32(data.len() as u32));
        b.extend(self.u32(data.len() as u32));
        b.extend(data);
        self.block(2, &b)
    }
    pub fn spb(&mut self, data: &[u8]) -> &mut Self {
        let mut b = Vec::new();
        b.extend(self.u32(data.len() as u32));
        b.extend(data);
        self.block(3, &b)
    }
    pub fn nrb_v4(&mut self, addr: [u8; 4], name: &str) -> &mut Self {
        let mut v = addr.to_vec();
        v.extend(name.as_bytes());
        v.push(0);
        let mut b = Vec::new();
        b.extend(self.u16(1));
        b.extend(self.u16(v.len() as u16));
        b.extend(&v);
        while b.len() % 4 != 0 {
            b.push(0);
        }
        b.extend(self.end());
        self.block(4, &b)
    }
    pub fn isb(&mut self, iface: u32, drop: u64) -> &mut Self {
        let mut b = Vec::new();
        b.extend(self.u32(iface));
        b.extend(self.u32(0));
        b.extend(self.u32(0));
        b.extend(self.opt(5, &self.u64(drop)));
        b.extend(self.end());
        self.block(5, &b)
    }
    pub fn custom(&mut self) -> &mut Self {
        let mut b = Vec::new();
        b.extend(self.u32(32473)); // private enterprise number
        b.extend(b"opaque vendor data");
        self.block(0x0000_0BAD, &b)
    }
}

/// A classic pcap file: `be` byte order, `nanos` resolution, records (secs, frac, data, orig).
pub fn pcap_file(be: bool, nanos: bool, link: u32, recs: &[(u32, u32, Vec<u8>, u32)]) -> Vec<u8> {
    let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let w16 = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut f = Vec::new();
    f.extend(w32(if nanos { 0xa1b23c4d } else { 0xa1b2c3d4 }));
    f.extend(w16(2));
    f.extend(w16(4));
    f.extend(w32(0));
    f.extend(w32(0));
    f.extend(w32(65535));
    f.extend(w32(link));
    for (s, fr, d, orig) in recs {
        f.extend(w32(*s));
        f.extend(w32(*fr));
        f.extend(w32(d.len() as u32));
        f.extend(w32(*orig));
        f.extend(d);
    }
    f
}

/// A plausible Ethernet/IPv4/UDP frame of `len` bytes whose payload encodes `seq`.
pub fn frame(len: usize, seq: u32) -> Vec<u8> {
    let mut f = vec![0u8; len.max(42)];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = (f.len() - 14) as u16;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f[34..36].copy_from_slice(&4000u16.to_be_bytes());
    f[36..38].copy_from_slice(&5000u16.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    let n = f.len();
    f[42.min(n)..]
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = (seq as usize + i) as u8);
    f
}

/// (ts, orig len, cap len, section-local interface, bytes) per packet, feeding `chunk` bytes
/// at a time.
pub fn decode_file(path: &Path, chunk: usize) -> Vec<(Option<u64>, u32, u32, u32, String)> {
    let data = std::fs::read(path).unwrap();
    let mut dec = CaptureDecoder::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(rec) = dec
            .decode(&mut buf)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        {
            if let Record::Packet(p) = rec {
                out.push((p.ts, p.orig_len, p.data.len() as u32, p.iface, hex(&p.data)));
            }
        }
    }
    dec.decode_eof(&buf).unwrap();
    out
}

/// Two network namespaces joined by a veth pair (`<a>-v` 10.X.Y.1 ↔ `<b>-v` 10.X.Y.2), removed on
/// drop. Needs root (CI runs as root).
pub struct NetPair {
    pub a: String,
    pub b: String,
    pub ip_a: String,
    pub ip_b: String,
}

fn sh(cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed (these tests need root and iproute2): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetPair {
    pub fn new(tag: &str) -> Self {
        let id = std::process::id() % 10000;
        let a = format!("pcm{id}{tag}a");
        let b = format!("pcm{id}{tag}b");
        let net =
            (id as usize * 7 + tag.len() * 31 + tag.bytes().map(|c| c as usize).sum::<usize>())
                % 250;
        let ip_a = format!("10.213.{net}.1");
        let ip_b = format!("10.213.{net}.2");
        let _ = Command::new("ip").args(["netns", "del", &a]).output();
        let _ = Command::new("ip").args(["netns", "del", &b]).output();
        sh(&format!("ip netns add {a} && ip netns add {b}"));
        sh(&format!(
            "ip link add {a}-v netns {a} type veth peer name {b}-v netns {b} && \
             ip -n {a} addr add {ip_a}/24 dev {a}-v && ip -n {b} addr add {ip_b}/24 dev {b}-v && \
             ip -n {a} link set {a}-v up && ip -n {b} link set {b}-v up && \
             ip -n {a} link set lo up && ip -n {b} link set lo up"
        ));
        NetPair { a, b, ip_a, ip_b }
    }

    /// A command run inside namespace `ns`.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).args(args);
        c
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.a]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.b]).output();
    }
}

/// Starts a capture tool with stderr piped, and waits until it says it is listening.
pub fn start_capture(mut cmd: Command, ready_word: &str) -> std::process::Child {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn capture");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("{cmd:?} ended before it was ready"))
            .unwrap();
        if line.contains(ready_word) {
            break;
        }
    }
    // keep draining so the tool never blocks on stderr
    std::thread::spawn(move || for _ in lines {});
    child
}

/// Stops a capture with SIGINT and waits for it.
pub fn stop_capture(mut child: std::process::Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(status.success() || status.code().is_some(), "{status}");
}

/// A background helper process (server, traffic loop) killed with its process group on drop.
pub struct Bg(pub std::process::Child);

impl Bg {
    pub fn spawn(mut cmd: Command) -> Bg {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Bg(cmd.spawn().expect("spawn helper"))
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

impl NetPair {
    /// An HTTP server in `b` and a client in `a` fetching from it every 50 ms.
    pub fn http_traffic(&self) -> (Bg, Bg) {
        let server = Bg::spawn({
            let mut c = self.exec(&self.b, &["python3", "-m", "http.server", "8080", "--bind"]);
            c.arg(&self.ip_b);
            c
        });
        std::thread::sleep(std::time::Duration::from_millis(500));
        let client = Bg::spawn(self.exec(
            &self.a,
            &[
                "sh",
                "-c",
                &format!(
                    "while true; do curl -s -o /dev/null http://{}:8080/; sleep 0.05; done",
                    self.ip_b
                ),
            ],
        ));
        (server, client)
    }

    /// Processes still running inside either namespace.
    pub fn pids(&self) -> Vec<String> {
        let mut v = Vec::new();
        for ns in [&self.a, &self.b] {
            let out = Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
                .unwrap();
            v.extend(
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .map(str::to_owned),
            );
        }
        v
    }
}

/// Polls until `f` is true or `timeout` passes; returns whether it became true.
pub fn wait_until(timeout: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    f()
}

/// Peak resident set (VmHWM) of a running process, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

//! A node whose clock is off (`--clock-offset node-2=+40ms`): every timestamp a capture in its
//! pods produces is shifted by the offset, as if the node's clock were wrong.
//!
//! The synthetic capture (not root) adds it directly ([`super::synth`]). The real tcpdump (as
//! root) is wrapped: the kubelet puts a `tcpdump` shim first in the PATH of that node's pod
//! processes, which runs `<this binary> __podcap-clock-offset-tcpdump REAL-TCPDUMP ARGS…`: the
//! real tcpdump with its stdout piped through [`Rewriter`], which shifts each pcap record's
//! timestamp on its way out (both byte orders, micro- and nanosecond files). Signals
//! (SIGTERM, SIGINT, SIGHUP) are passed on to tcpdump, its stderr is the shim's, and the shim
//! exits with tcpdump's status. A capture not written to stdout (`-w FILE`) runs unshifted.

use std::io::{Read as _, Write as _};
use std::sync::atomic::{AtomicI32, Ordering};

/// The hidden first argument under which a binary acts as the clock-offset shim.
pub const ARG: &str = "__podcap-clock-offset-tcpdump";

/// The environment variable holding the offset in nanoseconds (signed).
pub const ENV_CLOCK_OFFSET: &str = "PODCAP_CLOCK_OFFSET_NS";

/// The offset of this process's node (0 when unset).
pub fn offset_from_env() -> i64 {
    std::env::var(ENV_CLOCK_OFFSET)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// `(seconds, fraction)` of a record (fraction in µs, or ns when `nano`) shifted by `offset` ns.
pub fn shift(secs: u32, frac: u32, nano: bool, offset: i64) -> (u32, u32) {
    let unit: i128 = if nano { 1 } else { 1000 };
    let t = i128::from(secs) * 1_000_000_000 + i128::from(frac) * unit + i128::from(offset);
    let t = t.max(0);
    let s = (t / 1_000_000_000) as u32;
    let f = ((t % 1_000_000_000) / unit) as u32;
    (s, f)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting the 24-byte file header.
    Header,
    /// Collecting a 16-byte record header.
    Record,
    /// Passing on this many bytes of packet data.
    Data(usize),
    /// Not a pcap stream (or not one we know): everything passes unchanged.
    Through,
}

/// Shifts the record timestamps of a classic pcap stream that arrives in pieces.
#[derive(Debug)]
pub struct Rewriter {
    offset: i64,
    state: State,
    swapped: bool,
    nano: bool,
    partial: Vec<u8>,
}

impl Rewriter {
    /// A rewriter adding `offset` nanoseconds.
    pub fn new(offset: i64) -> Rewriter {
        Rewriter {
            offset,
            state: State::Header,
            swapped: false,
            nano: false,
            partial: Vec::with_capacity(24),
        }
    }

    fn u32_at(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.swapped {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }

    fn put_u32(&self, v: u32) -> [u8; 4] {
        if self.swapped {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    /// Appends to `out` what `input` becomes; bytes of an incomplete header wait for the next
    /// piece.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match self.state {
                State::Through => {
                    out.extend_from_slice(input);
                    return;
                }
                State::Data(n) => {
                    let k = n.min(input.len());
                    out.extend_from_slice(&input[..k]);
                    input = &input[k..];
                    self.state = if k == n {
                        State::Record
                    } else {
                        State::Data(n - k)
                    };
                }
                State::Header | State::Record => {
                    let need = if self.state == State::Header { 24 } else { 16 };
                    let k = (need - self.partial.len()).min(input.len());
                    self.partial.extend_from_slice(&input[..k]);
                    input = &input[k..];
                    if self.partial.len() < need {
                        return;
                    }
                    let h = std::mem::take(&mut self.partial);
                    if self.state == State::Header {
                        let magic = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
                        let known = match magic {
                            0xa1b2_c3d4 => Some((false, false)),
                            0xa1b2_3c4d => Some((false, true)),
                            0xd4c3_b2a1 => Some((true, false)),
                            0x4d3c_b2a1 => Some((true, true)),
                            _ => None,
                        };
                        out.extend_from_slice(&h);
                        self.state = match known {
                            Some((swapped, nano)) => {
                                self.swapped = swapped;
                                self.nano = nano;
                                State::Record
                            }
                            None => State::Through,
                        };
                    } else {
                        let (s, f) = shift(
                            self.u32_at(&h[0..]),
                            self.u32_at(&h[4..]),
                            self.nano,
                            self.offset,
                        );
                        out.extend_from_slice(&self.put_u32(s));
                        out.extend_from_slice(&self.put_u32(f));
                        out.extend_from_slice(&h[8..16]);
                        let incl = self.u32_at(&h[8..]) as usize;
                        self.state = if incl == 0 {
                            State::Record
                        } else {
                            State::Data(incl)
                        };
                    }
                }
            }
        }
    }
}

/// Whether tcpdump's arguments write the capture to stdout (`-w -`, also in a cluster of
/// short options like `-Uw -`).
pub fn writes_stdout(args: &[String]) -> bool {
    // Short options of tcpdump that take a value.
    const VALUED: &str = "BcCEFGijMmrsTVwWyzZQ";
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            return false;
        }
        if let Some(cluster) = a.strip_prefix('-').filter(|c| !c.starts_with('-')) {
            for (k, c) in cluster.char_indices() {
                if VALUED.contains(c) {
                    let rest = &cluster[k + c.len_utf8()..];
                    let value = if rest.is_empty() {
                        i += 1;
                        args.get(i).map(String::as_str).unwrap_or("")
                    } else {
                        rest
                    };
                    if c == 'w' && value == "-" {
                        return true;
                    }
                    break;
                }
            }
        }
        i += 1;
    }
    false
}

static CHILD: AtomicI32 = AtomicI32::new(0);
static SIGNALLED: AtomicI32 = AtomicI32::new(0);

extern "C" fn pass_on(sig: libc::c_int) {
    SIGNALLED.store(sig, Ordering::SeqCst);
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Runs the shim: `args` = the real tcpdump's path, then its arguments. Returns the exit code.
pub fn run(args: &[String]) -> u8 {
    let Some((real, targs)) = args.split_first() else {
        eprintln!("podcap-testcluster clock-offset shim: no tcpdump to run");
        return 1;
    };
    let offset = offset_from_env();
    if offset == 0 || !writes_stdout(targs) {
        use std::os::unix::process::CommandExt as _;
        let e = std::process::Command::new(real).args(targs).exec();
        eprintln!("tcpdump: {real}: {e}");
        return 127;
    }
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: the handler only uses atomics and kill (async-signal-safe).
        unsafe {
            libc::signal(
                sig,
                pass_on as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
    let mut cmd = std::process::Command::new(real);
    cmd.args(targs).stdout(std::process::Stdio::piped());
    // SAFETY: prctl is async-signal-safe; tcpdump ends if the shim is killed outright.
    unsafe {
        use std::os::unix::process::CommandExt as _;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tcpdump: {real}: {e}");
            return 127;
        }
    };
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    let early = SIGNALLED.load(Ordering::SeqCst);
    if early != 0 {
        // SAFETY: plain kill of our child.
        unsafe {
            libc::kill(child.id() as i32, early);
        }
    }
    let mut from = child.stdout.take().expect("piped stdout");
    let mut rewriter = Rewriter::new(offset);
    let mut buf = vec![0u8; 64 * 1024];
    let mut shifted = Vec::with_capacity(buf.len() + 64);
    let mut out = std::io::stdout().lock();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        shifted.clear();
        rewriter.push(&buf[..n], &mut shifted);
        if out.write_all(&shifted).and_then(|()| out.flush()).is_err() {
            // Our reader is gone: so is tcpdump's (it would have got EPIPE too).
            // SAFETY: plain kill of our child.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            break;
        }
    }
    drop(from);
    let status = loop {
        match child.wait() {
            Ok(s) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return 1,
        }
    };
    match status.code() {
        Some(c) => c as u8,
        None => {
            let sig = std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0);
            (128 + sig) as u8
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn shifts_across_second_boundaries() {
        assert_eq!(shift(10, 990_000, false, 40_000_000), (11, 30_000));
        assert_eq!(shift(10, 10_000, false, -40_000_000), (9, 970_000));
        assert_eq!(shift(10, 5, true, -6), (9, 999_999_999));
        assert_eq!(shift(0, 0, true, -1), (0, 0));
    }

    #[test]
    fn rewrites_records_in_any_piece_size() {
        let mut pcap = crate::synth::pcap_header(276, false, 262_144);
        for i in 0..3u32 {
            pcap.extend_from_slice(&crate::synth::pcap_record(
                std::time::Duration::new(100 + u64::from(i), 999_000_000),
                false,
                262_144,
                &[i as u8; 7],
            ));
        }
        for piece in [1, 5, 16, 1000] {
            let mut r = Rewriter::new(2_000_000);
            let mut out = Vec::new();
            for c in pcap.chunks(piece) {
                r.push(c, &mut out);
            }
            assert_eq!(out.len(), pcap.len());
            assert_eq!(&out[..24], &pcap[..24]);
            // record 2: 101.999000 + 2 ms = 102.001000
            let rec = 24 + 23;
            assert_eq!(
                u32::from_le_bytes(out[rec..rec + 4].try_into().unwrap()),
                102
            );
            assert_eq!(
                u32::from_le_bytes(out[rec + 4..rec + 8].try_into().unwrap()),
                1_000
            );
            assert_eq!(&out[rec + 16..rec + 23], &[1u8; 7]);
        }
        let mut r = Rewriter::new(5);
        let mut out = Vec::new();
        r.push(b"not a capture at all, just text", &mut out);
        assert_eq!(out, b"not a capture at all, just text");
    }

    #[test]
    fn finds_stdout_captures() {
        assert!(writes_stdout(&s(&[
            "-i", "any", "-U", "-w", "-", "--", "tcp"
        ])));
        assert!(writes_stdout(&s(&["-Uw", "-"])));
        assert!(writes_stdout(&s(&["-w-"])));
        assert!(!writes_stdout(&s(&["-w", "/tmp/x.pcap"])));
        assert!(!writes_stdout(&s(&["-iwlan0", "-c", "3"])));
        assert!(!writes_stdout(&s(&["--", "-w", "-"])));
    }
}

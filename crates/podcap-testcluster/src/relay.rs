//! The node latency without `tc netem` (kernels built without `sch_netem`): a tap device on
//! every node bridge (`pc<PORT>t<k>`) and one thread that works as the switch between them —
//! it reads each frame a node bridge sends out of its tap, holds it for the latency and writes
//! it into the tap of the node bridge it is for (learned from source MACs; broadcast, multicast
//! and unknown destinations go to every other node). So a packet between pods on different
//! nodes takes the latency one way, and pods on the same node are not delayed.
//!
//! The taps are not persistent: they disappear when the thread closes them (at [`Relay::stop`],
//! or with the process).

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The switch between the node bridges.
#[derive(Debug)]
pub struct Relay {
    stop: Arc<AtomicBool>,
    /// Frames forwarded so far.
    pub forwarded: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

/// `TUNSETIFF` (`_IOW('T', 202, int)`).
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Opens tap `name` (no packet information header, non-blocking).
fn open_tap(name: &str) -> Result<OwnedFd, String> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(format!("tap name {name:?} is too long"));
    }
    // SAFETY: a NUL-terminated path and plain flags.
    let fd = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(format!(
            "open /dev/net/tun: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads (and writes back) an ifreq, which `req` is laid out as.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &mut req) };
    if r < 0 {
        return Err(format!(
            "TUNSETIFF {name}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(fd)
}

impl Relay {
    /// Makes tap `<prefix>t<k>` on each of `bridges` (node k+1's) and starts the switch with
    /// one-way delay `latency`.
    pub fn start(prefix: &str, bridges: &[String], latency: Duration) -> Result<Relay, String> {
        let mut taps = Vec::new();
        for (i, bridge) in bridges.iter().enumerate() {
            let name = format!("{prefix}t{}", i + 1);
            let fd = open_tap(&name)?;
            let out = std::process::Command::new("ip")
                .args(["link", "set", &name, "master", bridge, "up"])
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(|e| format!("ip link set {name}: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "ip link set {name} master {bridge}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            taps.push(fd);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let forwarded = Arc::new(AtomicU64::new(0));
        let (s, f) = (stop.clone(), forwarded.clone());
        let thread = std::thread::Builder::new()
            .name("node-relay".into())
            .spawn(move || switch(&taps, latency, &s, &f))
            .map_err(|e| format!("relay thread: {e}"))?;
        Ok(Relay {
            stop,
            forwarded,
            thread: Some(thread),
        })
    }

    /// Stops the switch; its taps go with it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// How long the switch waits at most between looks at its stop flag.
const TICK: Duration = Duration::from_millis(50);

/// One frame on its way: due time, the tap it came from, the bytes.
type InFlight = (Instant, usize, Vec<u8>);

fn switch(taps: &[OwnedFd], latency: Duration, stop: &AtomicBool, forwarded: &AtomicU64) {
    let mut queue: VecDeque<InFlight> = VecDeque::new();
    let mut where_is: HashMap<[u8; 6], usize> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    let mut fds: Vec<libc::pollfd> = taps
        .iter()
        .map(|t| libc::pollfd {
            fd: t.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let wait = queue
            .front()
            .map_or(TICK, |f| f.0.saturating_duration_since(now).min(TICK));
        let ts = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `fds` is a valid array of pollfd of the given length; no signal mask.
        let n = unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                &ts,
                std::ptr::null(),
            )
        };
        if n > 0 {
            for (i, p) in fds.iter().enumerate() {
                if p.revents & libc::POLLIN == 0 {
                    continue;
                }
                loop {
                    // SAFETY: reading into a buffer of the given length.
                    let r = unsafe { libc::read(p.fd, buf.as_mut_ptr().cast(), buf.len()) };
                    if r <= 0 {
                        break;
                    }
                    let frame = buf[..r as usize].to_vec();
                    if frame.len() >= 14 {
                        let mut src = [0u8; 6];
                        src.copy_from_slice(&frame[6..12]);
                        if src[0] & 1 == 0 {
                            where_is.insert(src, i);
                        }
                        queue.push_back((Instant::now() + latency, i, frame));
                    }
                }
            }
        }
        let now = Instant::now();
        while queue.front().is_some_and(|f| f.0 <= now) {
            let Some((_, from, frame)) = queue.pop_front() else {
                break;
            };
            let mut dst = [0u8; 6];
            dst.copy_from_slice(&frame[0..6]);
            let to: Vec<usize> = match where_is.get(&dst) {
                Some(&port) if dst[0] & 1 == 0 => vec![port],
                _ => (0..taps.len()).collect(),
            };
            for t in to.into_iter().filter(|t| *t != from) {
                // SAFETY: writing a whole frame from a live buffer.
                let _ = unsafe { libc::write(fds[t].fd, frame.as_ptr().cast(), frame.len()) };
                forwarded.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

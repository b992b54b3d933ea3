//! Sinks: where the pcapng goes. Standard output (a live Wireshark), one file, or a rotating
//! ring of files with dumpcap's vocabulary (`-b filesize:KB`, `duration:SEC`, `interval:SEC`,
//! `packets:N`, `files:N`) and names (`PREFIX_00001_YYYYmmddHHMMSS.pcapng`), optionally gzip.

use flate2::write::GzEncoder;
use flate2::Compression;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A file (or stdout) being written, plain or gzip-compressed.
pub enum FileOut {
    Plain(File),
    Gzip(GzEncoder<File>),
}

impl Write for FileOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            FileOut::Plain(f) => f.write(buf),
            FileOut::Gzip(g) => g.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            FileOut::Plain(f) => f.flush(),
            FileOut::Gzip(g) => g.flush(),
        }
    }
}

impl FileOut {
    /// Finishes the file (the gzip trailer) and syncs nothing: the OS writes it out.
    pub fn close(self) -> io::Result<()> {
        match self {
            FileOut::Plain(mut f) => f.flush(),
            FileOut::Gzip(g) => g.finish().map(drop),
        }
    }

    fn create(path: &Path, gzip: bool) -> io::Result<FileOut> {
        let f = File::create(path)?;
        Ok(if gzip {
            FileOut::Gzip(GzEncoder::new(f, Compression::fast()))
        } else {
            FileOut::Plain(f)
        })
    }
}

/// Standard output as a plain file (Rust's `Stdout` is line-buffered, wrong for binary data).
/// When it is a pipe, the pipe is enlarged (to 1 MiB, the usual limit): measured, this alone
/// takes a 1.1 GB merge into a pipe from 1.47 s to 0.45 s, as writer and reader wake each
/// other 16 times less often.
pub fn stdout_file() -> io::Result<File> {
    let f = File::from(io::stdout().as_fd().try_clone_to_owned()?);
    enlarge_pipe(&f);
    Ok(f)
}

/// Size we ask for a pipe we write to.
pub const PIPE_SIZE: i32 = 1024 * 1024;

fn enlarge_pipe(f: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: fstat and fcntl on a descriptor we own; failures are ignored (best effort).
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(f.as_raw_fd(), &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFIFO {
            libc::fcntl(f.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE);
        }
    }
}

/// Has the reader of our standard output gone away? Checks the pipe itself (poll reports
/// POLLERR on a pipe whose read end is closed), so it works when no packet is flowing.
/// Always false when stdout is not a pipe.
pub fn stdout_reader_gone() -> bool {
    let mut pfd = libc::pollfd {
        fd: 1,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// When to switch to the next file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RingOptions {
    /// `filesize:KB` (dumpcap's kB: 1000 bytes)
    pub filesize_kb: Option<u64>,
    /// `duration:SEC` since the file was opened
    pub duration: Option<Duration>,
    /// `interval:SEC`, aligned to the wall clock (a new file at every multiple)
    pub interval: Option<u64>,
    /// `packets:N`
    pub packets: Option<u64>,
    /// `files:N`: keep at most N files, deleting the oldest
    pub files: Option<usize>,
}

impl RingOptions {
    /// Does any condition switch files? (`files:N` alone does not.)
    pub fn rotates(&self) -> bool {
        self.filesize_kb.is_some()
            || self.duration.is_some()
            || self.interval.is_some()
            || self.packets.is_some()
    }
}

/// Where the output goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File {
        path: PathBuf,
        gzip: bool,
    },
    Ring {
        path: PathBuf,
        gzip: bool,
        options: RingOptions,
    },
}

/// The open output: what the engine needs besides the writer (the ring, for rotation).
pub struct Sink {
    pub ring: Option<Ring>,
    pub is_stdout: bool,
}

impl Sink {
    /// Opens `target`: standard output, a file (gzip when asked), or the first file of a ring.
    pub fn open(target: &Target) -> io::Result<(FileOut, Sink)> {
        match target {
            Target::Stdout => Ok((
                FileOut::Plain(stdout_file()?),
                Sink {
                    ring: None,
                    is_stdout: true,
                },
            )),
            Target::File { path, gzip } => {
                let out = FileOut::create(path, *gzip).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display()))
                })?;
                Ok((
                    out,
                    Sink {
                        ring: None,
                        is_stdout: false,
                    },
                ))
            }
            Target::Ring {
                path,
                gzip,
                options,
            } => {
                let mut ring = Ring::new(path, *gzip, options.clone());
                let (out, first) = ring.open_next()?;
                ring.commit(first);
                Ok((
                    out,
                    Sink {
                        ring: Some(ring),
                        is_stdout: false,
                    },
                ))
            }
        }
    }
}

/// Local time as dumpcap writes it in file names: YYYYmmddHHMMSS.
pub fn local_stamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as libc::time_t;
    // SAFETY: localtime_r fills the tm we own; tzset is implied.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&secs, &mut tm) };
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// The rotating file set.
pub struct Ring {
    prefix: PathBuf,
    suffix: String,
    gzip: bool,
    options: RingOptions,
    index: u64,
    opened: Instant,
    opened_wall: u64,
    packets: u64,
    kept: VecDeque<PathBuf>,
    /// Files written so far, oldest first (deleted ones included).
    pub written: Vec<PathBuf>,
}

impl Ring {
    /// `path` gives prefix and suffix: `cap.pcapng` → `cap_00001_20260101120000.pcapng`.
    pub fn new(path: &Path, gzip: bool, options: RingOptions) -> Self {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "capture".into());
        let (stem, ext) = match name.find('.') {
            Some(i) if i > 0 => (name[..i].to_string(), name[i..].to_string()),
            _ => (name.clone(), ".pcapng".to_string()),
        };
        let ext = if gzip && !ext.ends_with(".gz") {
            format!("{ext}.gz")
        } else {
            ext
        };
        Ring {
            prefix: path.with_file_name(stem),
            suffix: ext,
            gzip,
            options,
            index: 0,
            opened: Instant::now(),
            opened_wall: 0,
            packets: 0,
            kept: VecDeque::new(),
            written: Vec::new(),
        }
    }

    /// Creates the next file of the ring; it counts as written once [`Ring::commit`]ted.
    pub fn open_next(&mut self) -> io::Result<(FileOut, PathBuf)> {
        self.index += 1;
        let now = SystemTime::now();
        let path = PathBuf::from(format!(
            "{}_{:05}_{}{}",
            self.prefix.display(),
            self.index,
            local_stamp(now),
            self.suffix
        ));
        let out = FileOut::create(&path, self.gzip).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display()))
        })?;
        Ok((out, path))
    }

    /// The file from [`Ring::open_next`] is now the one written to.
    pub fn commit(&mut self, path: PathBuf) {
        self.opened = Instant::now();
        self.opened_wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.packets = 0;
        self.kept.push_back(path.clone());
        self.written.push(path);
    }

    /// Deletes the oldest files beyond `files:N` (call after the previous file is closed).
    pub fn prune(&mut self) -> io::Result<()> {
        if let Some(max) = self.options.files {
            while self.kept.len() > max {
                if let Some(old) = self.kept.pop_front() {
                    std::fs::remove_file(&old).or_else(|e| {
                        if e.kind() == io::ErrorKind::NotFound {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })?;
                }
            }
        }
        Ok(())
    }

    /// A packet is about to be written: must the file switch first? `bytes` is the size of the
    /// current file so far.
    pub fn due(&self, bytes: u64) -> bool {
        let o = &self.options;
        (self.packets > 0 || bytes > 0)
            && (o.packets.is_some_and(|n| self.packets >= n)
                || o.filesize_kb
                    .is_some_and(|kb| bytes >= kb.saturating_mul(1000))
                || self.due_by_time())
    }

    /// Time-based switch, also checked when no packet flows.
    pub fn due_by_time(&self) -> bool {
        let o = &self.options;
        if o.duration.is_some_and(|d| self.opened.elapsed() >= d) {
            return true;
        }
        if let Some(iv) = o.interval {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            return now / iv != self.opened_wall / iv;
        }
        false
    }

    /// Counts a packet written to the current file.
    pub fn count_packet(&mut self) {
        self.packets += 1;
    }
}

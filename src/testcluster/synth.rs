//! Synthetic capture for the test cluster without root (no network namespaces, no real
//! tcpdump): to be built (issue 4). `main_if_invoked` is the entry both binaries call first.

/// The hidden first argument under which a binary acts as the synthetic tcpdump.
pub const ARG: &str = "__podcap-synthetic-tcpdump";

/// When the process was started as the synthetic tcpdump, runs it and returns its exit code.
pub fn main_if_invoked() -> Option<std::process::ExitCode> {
    if std::env::args().nth(1).as_deref() != Some(ARG) {
        return None;
    }
    eprintln!("tcpdump: the synthetic capture is not built yet");
    Some(std::process::ExitCode::from(1))
}

//! Checking a capture filter on this machine before any pod is touched: the local tcpdump
//! compiles it (`tcpdump -d`) for the link type the pods' tcpdump will capture, reading only
//! a pcap file header of that link type from its standard input. No privileges and no
//! interface are needed. The pods' tcpdump may be another version, so a filter it would refuse
//! can still pass here; a filter refused here is refused there too.

use std::io::Write;
use std::process::{Command, Stdio};

/// Why a filter is not known to be good.
#[derive(Debug, PartialEq, Eq)]
pub enum Problem {
    /// tcpdump refused it: its own message.
    Invalid(String),
    /// It could not be checked here (no tcpdump): why.
    Unchecked(String),
}

/// Compiles `filter` for `link_type` (a pcap LINKTYPE_ value) with the local tcpdump.
pub fn check(filter: &str, link_type: u32) -> Result<(), Problem> {
    let mut child = Command::new("tcpdump")
        .args(["-d", "-r", "-", "--", filter])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Problem::Unchecked(format!("no local tcpdump to check the filter ({e})")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // a classic pcap file header: magic, version 2.4, zone, sigfigs, snaplen, link type
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&[0; 8]);
        h.extend_from_slice(&262_144u32.to_le_bytes());
        h.extend_from_slice(&link_type.to_le_bytes());
        // tcpdump may exit before reading it all when the filter is refused early
        let _ = stdin.write_all(&h);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Problem::Unchecked(format!("tcpdump -d failed to run ({e})")))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("tcpdump: "))
        .unwrap_or("tcpdump refused the filter");
    Err(Problem::Invalid(format!("{line} (in {filter:?})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    // tcpdump is on every machine that runs the tests (scripts/test installs it)
    #[test]
    fn tcpdump_judges_the_filter() {
        assert_eq!(check("tcp port 80", 276), Ok(()));
        assert_eq!(check("", 1), Ok(()));
        match check("tcp prot 80", 276) {
            Err(Problem::Invalid(m)) => {
                assert!(m.contains("syntax error"), "{m}");
                assert!(m.contains("tcp prot 80"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        // link-type dependent: `ether host` needs an Ethernet header, which SLL2 lacks
        assert_eq!(check("ether host 01:02:03:04:05:06", 1), Ok(()));
    }
}

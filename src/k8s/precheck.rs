//! Checking the capture before any pod is changed (docs/design.md §10): every capture container
//! stays in its pod for good, so a filter that tcpdump will refuse must be refused here, once,
//! with tcpdump's own words, not by every pod in turn.
//!
//! The filter is compiled by the local tcpdump for the link type the pods' captures will have
//! (`-i any`: Linux cooked v2; a named interface: Ethernet), reading a capture that is nothing
//! but a pcap header from its stdin (`tcpdump -d -r -`), so neither root nor a network
//! interface is needed. What cannot be checked here (an interface the pods may lack, a filter
//! when no tcpdump is installed, a pod's older tcpdump) is checked on the first pod, before
//! the others are touched (the probe in [`super::fanout`]).

use std::io::Write;
use std::process::{Command, Stdio};

/// What the local check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterCheck {
    /// Nothing to check (no filter) or tcpdump compiled it.
    Accepted,
    /// tcpdump refused it: its own message.
    Refused(String),
    /// It could not be checked here (why); the first pod checks it.
    Unchecked(String),
}

/// LINKTYPE_LINUX_SLL2: what tcpdump ≥ 4.99 writes for `-i any`.
const LINKTYPE_LINUX_SLL2: u32 = 276;
/// LINKTYPE_ETHERNET: a pod's own interfaces (veth).
const LINKTYPE_ETHERNET: u32 = 1;

/// The link type a pod capture on `interface` will have.
pub fn link_type_for(interface: &str) -> u32 {
    if interface == "any" {
        LINKTYPE_LINUX_SLL2
    } else {
        LINKTYPE_ETHERNET
    }
}

/// A classic pcap header (nanosecond magic) and nothing else: an empty capture of `link_type`.
fn empty_capture(link_type: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(24);
    h.extend_from_slice(&0xa1b2_3c4du32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&0i32.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&262_144u32.to_le_bytes());
    h.extend_from_slice(&link_type.to_le_bytes());
    h
}

/// Compiles `filter` with the local `tcpdump` (the program named `tcpdump` on PATH) for the
/// link type of a capture on `interface`.
pub fn check_filter(interface: &str, filter: &[String]) -> FilterCheck {
    check_filter_with("tcpdump", interface, filter)
}

/// [`check_filter`] with the tcpdump program given.
pub fn check_filter_with(tcpdump: &str, interface: &str, filter: &[String]) -> FilterCheck {
    if filter.is_empty() {
        return FilterCheck::Accepted;
    }
    let child = Command::new(tcpdump)
        .args(["-d", "-r", "-", "--"])
        .args(filter)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return FilterCheck::Unchecked(format!(
                "no local tcpdump to compile the filter ({tcpdump}: {e})"
            ))
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // a tcpdump that stopped reading has already decided; its exit status tells
        let _ = stdin.write_all(&empty_capture(link_type_for(interface)));
    }
    let out = match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => return FilterCheck::Unchecked(format!("running the local tcpdump: {e}")),
    };
    if out.status.success() {
        return FilterCheck::Accepted;
    }
    let said: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("reading from file") && !l.starts_with("Warning:")
        })
        .map(str::to_string)
        .collect();
    if said.is_empty() {
        return FilterCheck::Unchecked(format!(
            "the local tcpdump ended with {} without saying why",
            out.status
        ));
    }
    FilterCheck::Refused(said.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn the_empty_capture_is_a_pcap_header() {
        let h = empty_capture(276);
        assert_eq!(h.len(), 24);
        assert_eq!(&h[20..], &276u32.to_le_bytes());
    }

    #[test]
    fn no_filter_needs_no_tcpdump() {
        assert_eq!(
            check_filter_with("/nonexistent/tcpdump", "any", &[]),
            FilterCheck::Accepted
        );
    }

    #[test]
    fn a_missing_tcpdump_leaves_the_filter_to_the_first_pod() {
        let r = check_filter_with("/nonexistent/tcpdump", "any", &words("tcp port 80"));
        assert!(matches!(r, FilterCheck::Unchecked(ref m) if m.contains("no local tcpdump")));
    }

    #[test]
    fn tcpdump_judges_the_filter_for_the_pods_link_type() {
        assert_eq!(
            check_filter("any", &words("tcp port 80")),
            FilterCheck::Accepted
        );
        match check_filter("any", &words("tcp prot 80")) {
            FilterCheck::Refused(m) => assert!(m.contains("syntax error"), "{m}"),
            other => panic!("tcpdump (apt package tcpdump) must refuse it: {other:?}"),
        }
        // Ethernet addresses exist on eth0 (Ethernet), not on `any` (cooked)
        assert_eq!(
            check_filter("eth0", &words("ether host 02:00:00:00:00:01")),
            FilterCheck::Accepted
        );
        assert!(matches!(
            check_filter("any", &words("ether host 02:00:00:00:00:01")),
            FilterCheck::Refused(_)
        ));
    }
}

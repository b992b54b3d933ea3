//! Bad inputs: each gets a clear error naming the file, the byte offset and what is wrong; the
//! packets read before the fault and every packet of the good inputs are kept; the output is
//! valid pcapng (tshark and capinfos read it without warning); the exit status is 1.

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// A good pcapng prefix: SHB, IDB, two EPBs. Returns the builder and its length.
fn good_prefix() -> Ng {
    let mut ng = Ng::new(false);
    ng.shb()
        .idb(1, 0, "eth0", Some(9), None)
        .epb(0, 1_700_000_000_000_000_100, &frame(60, 1), 60, None)
        .epb(0, 1_700_000_000_000_000_300, &frame(80, 2), 80, None);
    ng
}

fn good_pcap(dir: &Path) -> PathBuf {
    let recs: Vec<_> = (0..5u32)
        .map(|i| {
            (
                1_700_000_000,
                i * 100,
                frame(64 + i as usize, 100 + i),
                64 + i,
            )
        })
        .collect();
    let p = dir.join("good.pcap");
    std::fs::write(&p, pcap_file(false, false, 1, &recs)).unwrap();
    p
}

/// Merges good.pcap with `bad`; checks exit 1, the message, and that the output is valid and
/// holds the 5 good packets plus `kept` packets of the bad input.
fn check(name: &str, bad: Option<Vec<u8>>, kept: usize, expect: &[&str]) {
    let dir = tmpdir();
    let good = good_pcap(dir.path());
    let bad_path = dir.path().join(name);
    if let Some(bytes) = bad {
        std::fs::write(&bad_path, bytes).unwrap();
    }
    let out = dir.path().join("out.pcapng");
    let res = bin()
        .arg("merge")
        .arg("-w")
        .arg(&out)
        .arg(&good)
        .arg(&bad_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{name}: {stderr}");
    assert!(
        stderr.contains(&bad_path.display().to_string()),
        "{name}: {stderr}"
    );
    for e in expect {
        assert!(stderr.contains(e), "{name}: expected {e:?} in:\n{stderr}");
    }
    let packets = tshark_packets(&out);
    assert_eq!(packets.len(), 5 + kept, "{name}: {stderr}");
    assert_eq!(
        packets.iter().filter(|p| p.iface_name == "good").count(),
        5,
        "{name}"
    );
    capinfos_clean(&out);
}

#[test]
fn not_a_capture_file() {
    check(
        "notes.txt",
        Some(b"these are my notes, not a capture\n".to_vec()),
        0,
        &["byte offset 0", "not a capture file", "looks like text"],
    );
}

#[test]
fn empty_file() {
    check(
        "empty.pcap",
        Some(Vec::new()),
        0,
        &["byte offset 0", "empty"],
    );
}

#[test]
fn file_that_cannot_be_opened() {
    check(
        "does-not-exist.pcap",
        None,
        0,
        &["cannot open", "No such file"],
    );
}

#[test]
fn truncated_last_block() {
    let mut ng = good_prefix();
    let at = ng.out.len();
    ng.epb(0, 1_700_000_000_000_000_500, &frame(200, 3), 200, None);
    ng.out.truncate(at + 50);
    check(
        "truncated.pcapng",
        Some(ng.out),
        2,
        &[&format!("byte offset {at}"), "truncated", "50 byte(s)"],
    );
}

#[test]
fn truncated_pcap_record() {
    let recs = vec![
        (1_700_000_000, 5, frame(60, 7), 60),
        (1_700_000_000, 9, frame(1000, 8), 1000),
    ];
    let mut f = pcap_file(true, true, 1, &recs);
    f.truncate(f.len() - 10);
    check(
        "cut.pcap",
        Some(f),
        1,
        &[&format!("byte offset {}", 24 + 16 + 60), "truncated"],
    );
}

#[test]
fn block_length_not_a_multiple_of_4() {
    let mut ng = good_prefix();
    let at = ng.out.len();
    ng.epb(0, 1_700_000_000_000_000_500, &frame(64, 3), 64, None);
    let bad_len = (ng.out.len() - at - 2) as u32;
    ng.out[at + 4..at + 8].copy_from_slice(&bad_len.to_le_bytes());
    check(
        "len-not-4.pcapng",
        Some(ng.out),
        2,
        &[&format!("byte offset {at}"), "not a multiple of 4"],
    );
}

#[test]
fn block_length_below_minimum() {
    let mut ng = good_prefix();
    let at = ng.out.len();
    ng.block(6, &[0u8; 8]); // an EPB of 20 bytes: needs at least 32
    check(
        "short-epb.pcapng",
        Some(ng.out),
        2,
        &[
            &format!("byte offset {at}"),
            "smaller than its minimum of 32",
        ],
    );
}

#[test]
fn block_claiming_gigabytes() {
    let mut ng = good_prefix();
    let at = ng.out.len();
    ng.epb(0, 1_700_000_000_000_000_500, &frame(64, 3), 64, None);
    ng.out[at + 4..at + 8].copy_from_slice(&0xF000_0000u32.to_le_bytes());
    check(
        "huge.pcapng",
        Some(ng.out),
        2,
        &[
            &format!("byte offset {at}"),
            "claims 4026531840 bytes",
            "limit",
        ],
    );
}

#[test]
fn pcap_record_claiming_gigabytes() {
    let recs = vec![(1_700_000_000, 5, frame(60, 7), 60)];
    let mut f = pcap_file(false, false, 1, &recs);
    f.extend(1_700_000_001u32.to_le_bytes());
    f.extend(0u32.to_le_bytes());
    f.extend(0x7FFF_FFFFu32.to_le_bytes());
    f.extend(60u32.to_le_bytes());
    check(
        "huge.pcap",
        Some(f),
        1,
        &[
            &format!("byte offset {}", 24 + 16 + 60),
            "claims 2147483647 captured bytes",
        ],
    );
}

#[test]
fn packet_on_an_interface_that_does_not_exist() {
    let mut ng = good_prefix();
    let at = ng.out.len();
    ng.epb(3, 1_700_000_000_000_000_500, &frame(64, 3), 64, None);
    check(
        "bad-iface.pcapng",
        Some(ng.out),
        2,
        &[
            &format!("byte offset {at}"),
            "interface 3",
            "only 1 interface",
        ],
    );
}

#[test]
fn trailing_length_mismatch() {
    let mut ng = good_prefix();
    let at = ng.out.len();
    ng.epb(0, 1_700_000_000_000_000_500, &frame(64, 3), 64, None);
    let end = ng.out.len();
    ng.out[end - 4..].copy_from_slice(&8u32.to_le_bytes());
    check(
        "trailer.pcapng",
        Some(ng.out),
        2,
        &[&format!("byte offset {at}"), "trailing length 8 differs"],
    );
}

#[test]
fn every_input_bad_still_gives_a_valid_empty_capture() {
    let dir = tmpdir();
    let bad = dir.path().join("bad.bin");
    std::fs::write(&bad, [0u8; 100]).unwrap();
    let out = dir.path().join("out.pcapng");
    let res = bin()
        .arg("merge")
        .arg("-w")
        .arg(&out)
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(1));
    assert_eq!(tshark_packets(&out).len(), 0);
    capinfos_clean(&out);
}

#[test]
fn merge_refuses_to_overwrite_one_of_its_inputs() {
    let dir = tmpdir();
    let good = good_pcap(dir.path());
    let before = std::fs::read(&good).unwrap();
    let res = bin()
        .arg("merge")
        .arg("-w")
        .arg(&good)
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&res.stderr).contains("is also an input"));
    assert_eq!(
        std::fs::read(&good).unwrap(),
        before,
        "the input is untouched"
    );
}

#[test]
fn usage_errors_exit_2() {
    let res = bin().args(["merge", "-", "-"]).output().unwrap();
    assert_eq!(res.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&res.stderr).contains("standard input (-) can be given only once")
    );
    let res = bin().args(["merge"]).output().unwrap();
    assert_eq!(res.status.code(), Some(2));
    let dir = tmpdir();
    let res = bin()
        .arg("merge")
        .arg("-w")
        .arg(dir.path().join("no/such/dir/out.pcapng"))
        .arg(good_pcap(dir.path()))
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&res.stderr).contains("cannot create"));
    for bad in [
        &["--duration", "1e20", "--cmd", "a=true"][..],
        &["-c", "0", "--cmd", "a=true"],
        &["--source-buffer", "99999999999", "--cmd", "a=true"],
        &["-b", "files:3", "-w", "x.pcapng", "--cmd", "a=true"],
        &["-b", "filesize:10"],
        &["--cmd", "noequals"],
    ] {
        let res = bin().args(bad).output().unwrap();
        assert_eq!(
            res.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
    }
}

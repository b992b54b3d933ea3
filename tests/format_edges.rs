//! Capture-format edges found with the public tcpdump, libpcap and pcapng corpora, on vectors we
//! build here: what Wireshark would refuse never reaches the merged output (a corrupt Name
//! Resolution Block or a malformed option is dropped and counted as an error of its source,
//! and tshark reads the merged file to its end); timestamps that had to be adjusted are said
//! once per source with a count; copyable custom blocks are copied; a classic pcap link-type
//! field with reserved bits keeps its link type and FCS length. Judged by tshark and capinfos.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Ten packets of a good classic pcap, interleaved in time with the pcapng inputs below
/// (1_700_000_000 s + 0..=9 ms), so a reader that stops early loses some of them.
fn good_pcap(dir: &Path) -> PathBuf {
    let recs: Vec<_> = (0..10u32)
        .map(|i| (1_700_000_000, i * 1000 + 500, frame(64, 100 + i), 64))
        .collect();
    let p = dir.join("good.pcap");
    std::fs::write(&p, pcap_file(false, false, 1, &recs)).unwrap();
    p
}

/// A name resolution record (type, value) padded to 4 bytes, in the builder's byte order.
fn nrb_record(ng: &Ng, kind: u16, value: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend(ng.u16(kind));
    r.extend(ng.u16(value.len() as u16));
    r.extend(value);
    while !r.len().is_multiple_of(4) {
        r.push(0);
    }
    r
}

fn ipv6(last: u8) -> Vec<u8> {
    let mut a = vec![0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    a[15] = last;
    a
}

/// Merges `inputs` into `out`; returns the run's output (the exit status is checked by callers).
fn merge(out: &Path, inputs: &[&Path]) -> Output {
    bin()
        .arg("merge")
        .arg("-w")
        .arg(out)
        .args(inputs)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// tshark's name for `ip` with resolution from the file's NRBs only.
fn resolved(out: &Path) -> String {
    let o = run_ok(tool("tshark").arg("-r").arg(out).args([
        "-N",
        "n",
        "-T",
        "fields",
        "-e",
        "ip.src_host",
        "-e",
        "ip.dst_host",
    ]));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A pcapng input whose second block after the first packet is `nrb_body` (an NRB), followed by
/// more packets: 1_700_000_000 s + 0.1, 2.1, 4.1, 6.1, 8.1 ms.
fn with_nrb(be: bool, nrb_body: impl Fn(&Ng) -> Vec<u8>) -> Vec<u8> {
    let mut ng = Ng::new(be);
    ng.shb().idb(1, 0, "eth0", Some(9), None).epb(
        0,
        1_700_000_000_000_100_000,
        &frame(70, 1),
        70,
        None,
    );
    let body = nrb_body(&ng);
    ng.block(4, &body);
    for i in 1..5u64 {
        ng.epb(
            0,
            1_700_000_000_000_100_000 + i * 2_000_000,
            &frame(70, 1 + i as u32),
            70,
            None,
        );
    }
    ng.out
}

#[test]
fn corrupt_name_records_are_dropped_and_the_merged_file_reads_to_its_end() {
    // Each corruption Wireshark's pcapng reader refuses (it stops reading the file there):
    // a name without its NUL, an IPv4 record shorter than 4 bytes, an IPv6 record shorter
    // than 16, an IPv6 name without its NUL, a record overrunning its block.
    type Corrupt = fn(&Ng) -> Vec<u8>;
    let cases: [(&str, Corrupt); 5] = [
        ("name-without-nul", |ng| {
            nrb_record(ng, 1, b"\x0a\x00\x00\x09broken.test")
        }),
        ("ipv4-too-short", |ng| nrb_record(ng, 1, b"\x0a\x00\x00")),
        ("ipv6-too-short", |ng| nrb_record(ng, 2, &ipv6(9)[..15])),
        ("ipv6-name-without-nul", |ng| {
            let mut v = ipv6(9);
            v.extend(b"ok6.test\0broken6");
            nrb_record(ng, 2, &v)
        }),
        ("record-overruns-block", |ng| {
            let mut r = Vec::new();
            r.extend(ng.u16(1));
            r.extend(ng.u16(200));
            r.extend(b"\x0a\x00\x00\x09x\0\0\0");
            r
        }),
    ];
    for be in [false, true] {
        for (name, corrupt) in cases {
            let dir = tmpdir();
            let good = good_pcap(dir.path());
            let bad = dir.path().join(format!("{name}.pcapng"));
            std::fs::write(
                &bad,
                with_nrb(be, |ng| {
                    // a good record first (kept), then the corrupt one, then the end marker
                    let mut b = nrb_record(ng, 1, b"\x0a\x00\x00\x01client.test\0");
                    b.extend(corrupt(ng));
                    b.extend(ng.end());
                    b
                }),
            )
            .unwrap();
            let out = dir.path().join("out.pcapng");
            let res = merge(&out, &[&good, &bad]);
            let err = stderr(&res);
            // every packet of both inputs, read to the end without a warning
            let packets = tshark_packets(&out);
            assert_eq!(packets.len(), 15, "{name} (be={be}): {err}");
            capinfos_clean(&out);
            // the good record before the corrupt one still resolves
            assert!(
                resolved(&out).contains("client.test"),
                "{name} (be={be}): {}",
                resolved(&out)
            );
            assert!(!resolved(&out).contains("broken"), "{name} (be={be})");
            // an error of that source: named, with its offset, counted, exit 1
            assert_eq!(res.status.code(), Some(1), "{name} (be={be}): {err}");
            assert!(
                err.lines().any(|l| l.contains(&bad.display().to_string())
                    && l.contains("byte offset")
                    && l.contains("name resolution")),
                "{name} (be={be}): {err}"
            );
            assert!(err.contains("1 error(s)"), "{name} (be={be}): {err}");
        }
    }
}

#[test]
fn a_good_ipv6_name_next_to_a_corrupt_one_is_kept() {
    let dir = tmpdir();
    let bad = dir.path().join("v6.pcapng");
    std::fs::write(
        &bad,
        with_nrb(false, |ng| {
            let mut v = ipv6(1);
            v.extend(b"ok6.test\0cut");
            let mut b = nrb_record(ng, 2, &v);
            b.extend(ng.end());
            b
        }),
    )
    .unwrap();
    let out = dir.path().join("out.pcapng");
    let res = merge(&out, &[&bad]);
    assert_eq!(res.status.code(), Some(1), "{}", stderr(&res));
    assert_eq!(tshark_packets(&out).len(), 5);
    // the complete name before the cut one is what Wireshark would have kept
    let names = run_ok(
        tool("tshark")
            .arg("-r")
            .arg(&out)
            .args(["-q", "-z", "hosts"]),
    );
    let hosts = String::from_utf8_lossy(&names.stdout);
    assert!(hosts.contains("fd00::1\tok6.test"), "{hosts}");
    assert!(!hosts.contains("cut"), "{hosts}");
}

#[test]
fn malformed_options_are_dropped_not_copied_and_the_source_goes_on() {
    for be in [false, true] {
        let dir = tmpdir();
        let good = good_pcap(dir.path());
        let mut ng = Ng::new(be);
        // IDB: if_name, then an option claiming more bytes than the block has
        let mut idb = Vec::new();
        idb.extend(ng.u16(1));
        idb.extend(ng.u16(0));
        idb.extend(ng.u32(0));
        idb.extend(ng.opt(2, b"eth7"));
        idb.extend(ng.opt(9, &[9]));
        idb.extend(ng.u16(3));
        idb.extend(ng.u16(100));
        idb.extend(b"desc");
        ng.shb().block(1, &idb);
        // EPB whose epb_flags is 3 bytes (Wireshark: "flags option length 3 is not 4")
        let mut epb = Vec::new();
        let ts = 1_700_000_000_000_100_000u64;
        epb.extend(ng.u32(0));
        epb.extend(ng.u32((ts >> 32) as u32));
        epb.extend(ng.u32(ts as u32));
        let data = frame(64, 1);
        epb.extend(ng.u32(data.len() as u32));
        epb.extend(ng.u32(data.len() as u32));
        epb.extend(&data);
        epb.extend(ng.opt(2, &[1, 0, 0]));
        epb.extend(ng.end());
        ng.block(6, &epb);
        // EPB whose option overruns the block ("Not enough data to handle option")
        let mut epb = Vec::new();
        let ts = ts + 2_000_000;
        epb.extend(ng.u32(0));
        epb.extend(ng.u32((ts >> 32) as u32));
        epb.extend(ng.u32(ts as u32));
        let data = frame(64, 2);
        epb.extend(ng.u32(data.len() as u32));
        epb.extend(ng.u32(data.len() as u32));
        epb.extend(&data);
        epb.extend(ng.u16(2));
        epb.extend(ng.u16(40));
        epb.extend(ng.u32(1));
        ng.block(6, &epb);
        // and good packets after them
        for i in 2..5u64 {
            ng.epb(0, ts + i * 2_000_000, &frame(64, 1 + i as u32), 64, Some(1));
        }
        let bad = dir.path().join("options.pcapng");
        std::fs::write(&bad, &ng.out).unwrap();
        let out = dir.path().join("out.pcapng");
        let res = merge(&out, &[&good, &bad]);
        let err = stderr(&res);
        let packets = tshark_packets(&out);
        assert_eq!(packets.len(), 15, "be={be}: {err}");
        capinfos_clean(&out);
        // the interface keeps what came before the bad option
        assert_eq!(
            packets
                .iter()
                .filter(|p| p.iface_name == "options/eth7")
                .count(),
            5,
            "be={be}: {packets:?}"
        );
        assert_eq!(res.status.code(), Some(1), "be={be}: {err}");
        assert!(
            err.lines()
                .any(|l| l.contains(&bad.display().to_string()) && l.contains("option")),
            "be={be}: {err}"
        );
        assert!(err.contains("3 error(s)"), "be={be}: {err}");
    }
}

#[test]
fn out_of_range_subsecond_fields_are_carried_and_said_once_with_a_count() {
    for (nanos, unit) in [(false, 1_000_000u32), (true, 1_000_000_000)] {
        let dir = tmpdir();
        // three records whose sub-second field is out of range, two that are not
        let recs = vec![
            (1_700_000_000, unit / 2, frame(60, 1), 60),
            (1_700_000_000, unit + unit / 4 * 3, frame(60, 2), 60),
            (1_700_000_001, unit * 2, frame(60, 3), 60),
            (1_700_000_003, unit - 1, frame(60, 4), 60),
            (1_700_000_004, u32::MAX, frame(60, 5), 60),
        ];
        let p = dir.path().join("odd.pcap");
        std::fs::write(&p, pcap_file(false, nanos, 1, &recs)).unwrap();
        let out = dir.path().join("out.pcapng");
        let res = merge(&out, &[&p]);
        let err = stderr(&res);
        assert_eq!(res.status.code(), Some(0), "{err}");
        let ts: Vec<u64> = tshark_packets(&out).iter().map(|p| p.ts.unwrap()).collect();
        let scale = if nanos { 1 } else { 1000 };
        let carried = |s: u64, f: u32| s * 1_000_000_000 + u64::from(f) * scale;
        assert_eq!(
            ts,
            vec![
                carried(1_700_000_000, unit / 2),
                carried(1_700_000_000, unit + unit / 4 * 3),
                carried(1_700_000_001, unit * 2),
                carried(1_700_000_003, unit - 1),
                carried(1_700_000_004, u32::MAX),
            ]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>(),
            "{err}"
        );
        // one warning line for the source, and the count in the summary
        let warned: Vec<&str> = err.lines().filter(|l| l.contains("sub-second")).collect();
        assert!(!warned.is_empty(), "nanos={nanos}: {err}");
        assert!(
            warned.iter().any(|l| l.contains(&p.display().to_string())),
            "nanos={nanos}: {err}"
        );
        assert!(
            err.lines().any(|l| l.trim_start().starts_with("odd ")
                && l.contains("WARNINGS: 3 ")
                && l.contains("sub-second")),
            "nanos={nanos}: {err}"
        );
        assert!(err.contains("0 error(s)"), "{err}");
    }
}

#[test]
fn timestamps_beyond_the_nanosecond_range_are_pinned_and_said_once_with_a_count() {
    let dir = tmpdir();
    let mut ng = Ng::new(false);
    // seconds resolution: 2^40 s is far beyond 2554 (2^64 ns); a negative offset before 1970
    ng.shb()
        .idb(1, 0, "far", Some(0), None)
        .idb(1, 0, "early", Some(9), Some(-2_000_000_000))
        .epb(0, 1 << 40, &frame(60, 1), 60, None)
        .epb(0, (1 << 40) + 1, &frame(60, 2), 60, None)
        .epb(1, 1_000_000_000, &frame(60, 3), 60, None)
        .epb(0, 1_700_000_000, &frame(60, 4), 60, None);
    let p = dir.path().join("range.pcapng");
    std::fs::write(&p, &ng.out).unwrap();
    let out = dir.path().join("out.pcapng");
    let res = merge(&out, &[&p]);
    let err = stderr(&res);
    assert_eq!(res.status.code(), Some(0), "{err}");
    assert_eq!(tshark_packets(&out).len(), 4);
    assert!(
        err.lines().any(|l| l.contains(&p.display().to_string())
            && l.contains("beyond")
            && l.contains("nanosecond")),
        "{err}"
    );
    assert!(
        err.lines().any(|l| l.trim_start().starts_with("range ")
            && l.contains("WARNINGS: 3 ")
            && l.contains("pinned")),
        "{err}"
    );
}

#[test]
fn copyable_custom_blocks_are_copied_and_the_others_are_not() {
    for be in [false, true] {
        let dir = tmpdir();
        let mut ng = Ng::new(be);
        let mut copy = Vec::new();
        copy.extend(ng.u32(32473));
        copy.extend(b"copy me, I am portable");
        let mut no_copy = Vec::new();
        no_copy.extend(ng.u32(32473));
        no_copy.extend(b"do not copy me");
        ng.shb()
            .idb(1, 0, "eth0", Some(9), None)
            .epb(0, 1_700_000_000_000_000_000, &frame(60, 1), 60, None)
            .block(0x0000_0BAD, &copy)
            .block(0x4000_0BAD, &no_copy)
            .epb(0, 1_700_000_000_000_000_001, &frame(60, 2), 60, None);
        let p = dir.path().join("custom.pcapng");
        std::fs::write(&p, &ng.out).unwrap();
        let out = dir.path().join("out.pcapng");
        run_ok(bin().arg("merge").arg("-w").arg(&out).arg(&p));
        capinfos_clean(&out);
        assert_eq!(tshark_packets(&out).len(), 2);
        let o = run_ok(tool("tshark").arg("-r").arg(&out).args([
            "-T",
            "fields",
            "-e",
            "frame.cb_pen",
            "-e",
            "frame.cb_copy",
            "-e",
            "data.data",
        ]));
        let blocks: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('\t'))
            .map(str::to_owned)
            .collect();
        let data = hex(b"copy me, I am portable\0\0");
        assert_eq!(blocks, vec![format!("32473\t1\t{data}")], "be={be}");
    }
}

#[test]
fn classic_pcap_link_type_with_reserved_bits_keeps_its_link_type_and_fcs_length() {
    for be in [false, true] {
        let dir = tmpdir();
        // Ethernet (1), a reserved bit (16), FCS present (bit 26) of 2 16-bit words (bits 28..31)
        let link = 0x2401_0001u32;
        let mut f = frame(60, 1);
        f.extend([0xde, 0xad, 0xbe, 0xef]);
        let p = dir.path().join("fcs.pcap");
        std::fs::write(
            &p,
            pcap_file(be, false, link, &[(1_700_000_000, 1, f.clone(), 64)]),
        )
        .unwrap();
        let out = dir.path().join("out.pcapng");
        let res = merge(&out, &[&p]);
        let err = stderr(&res);
        assert_eq!(res.status.code(), Some(0), "{err}");
        let info = capinfos_clean(&out);
        assert!(
            info.contains("Encapsulation = Ethernet (1 - ether)"),
            "{info}"
        );
        assert!(info.contains("FCS length = 32"), "{info}");
        // tshark takes the last 4 bytes as the Ethernet FCS
        let o = run_ok(
            tool("tshark")
                .arg("-r")
                .arg(&out)
                .args(["-T", "fields", "-e", "eth.fcs"]),
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "0xdeadbeef");
        // the reserved bits are said (tshark itself refuses such a file)
        assert!(
            err.lines().any(|l| l.contains(&p.display().to_string())
                && l.contains("reserved")
                && l.contains("0x00010000")),
            "be={be}: {err}"
        );
    }
}

//! Our own vectors for what the conformance suite covers, so the repository stands alone:
//! big-endian and little-endian pcapng, several sections with different byte orders,
//! base-2 and picosecond resolutions, if_tsoffset, SPB, obsolete PB, NRB, custom blocks, ISB,
//! and the four classic pcap magics. Judged by tshark.

mod common;

use common::*;
use std::path::PathBuf;

fn vectors(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut put = |name: &str, bytes: Vec<u8>| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        files.push(p);
    };
    for be in [false, true] {
        // one section, base-2 resolution (2^-20 s), flags, PB, SPB, NRB, custom, ISB
        let mut ng = Ng::new(be);
        ng.shb()
            .idb(1, 0, "eth0", Some(0x80 | 20), None)
            .nrb_v4([10, 0, 0, 1], "client.test")
            .custom()
            .epb(
                0,
                (1_700_000_000u64 << 20) | 0x8_0000,
                &frame(60, 1),
                60,
                Some(1),
            )
            .pb(0, (1_700_000_000u64 << 20) | 0xC_0000, &frame(100, 2))
            .spb(&frame(80, 3))
            .epb(
                0,
                (1_700_000_001u64 << 20) | 1,
                &frame(1514, 4)[..96],
                1514,
                Some(2),
            )
            .isb(0, 7);
        put(
            &format!("base2-{}.pcapng", if be { "be" } else { "le" }),
            ng.out,
        );

        // picoseconds (only with an offset: 2^64 ps is 213 days) and a second interface
        let mut ng = Ng::new(be);
        ng.shb()
            .idb(1, 262144, "ps0", Some(12), Some(1_700_000_000))
            .idb(101, 65535, "", Some(9), None)
            .epb(0, 12_345_678_901, &frame(70, 5), 70, None)
            .epb(
                1,
                1_700_001_000_000_000_001,
                &frame(200, 6)[14..],
                186,
                None,
            );
        put(
            &format!("pico-{}.pcapng", if be { "be" } else { "le" }),
            ng.out,
        );
    }
    // several sections of different byte orders in one file
    let mut multi = Vec::new();
    let mut a = Ng::new(false);
    a.shb()
        .idb(1, 0, "lo", Some(3), None)
        .epb(0, 1_700_000_002_000, &frame(64, 7), 64, None);
    multi.extend(a.out);
    let mut b = Ng::new(true);
    b.shb()
        .idb(1, 0, "lo", None, None)
        .idb(1, 0, "eth1", Some(9), None)
        .epb(1, 1_700_000_003_000_000_000, &frame(90, 8), 90, None)
        .epb(0, 1_700_000_003_000_001, &frame(91, 9), 91, None);
    multi.extend(b.out);
    put("multi-section.pcapng", multi);
    // classic pcap: the four magics
    for (be, nanos) in [(false, false), (true, false), (false, true), (true, true)] {
        let frac = |n: u32| if nanos { n * 1000 + 7 } else { n };
        let recs = vec![
            (1_700_000_000, frac(10), frame(60, 10), 60),
            (
                1_700_000_000,
                frac(20),
                frame(1514, 11)[..128].to_vec(),
                1514,
            ),
            (1_700_000_004, frac(999_999), frame(300, 12), 300),
        ];
        put(
            &format!(
                "classic-{}-{}.pcap",
                if be { "be" } else { "le" },
                if nanos { "ns" } else { "us" }
            ),
            pcap_file(be, nanos, 1, &recs),
        );
    }
    files
}

#[test]
fn decoder_agrees_with_tshark_on_our_vectors() {
    let dir = tmpdir();
    for f in vectors(dir.path()) {
        let theirs: Vec<_> = tshark_packets(&f)
            .into_iter()
            .map(|p| (p.ts, p.len, p.cap_len, p.iface_id, p.bytes))
            .collect();
        assert!(!theirs.is_empty(), "{}", f.display());
        for chunk in [1 << 20, 1, 5] {
            assert_eq!(
                decode_file(&f, chunk),
                theirs,
                "{} in chunks of {chunk}",
                f.display()
            );
        }
    }
}

#[test]
fn merging_all_vectors_keeps_every_packet_on_its_named_interface() {
    let dir = tmpdir();
    let files = vectors(dir.path());
    let out = dir.path().join("merged.pcapng");
    run_ok(bin().arg("merge").arg("-w").arg(&out).args(&files));
    let merged = tshark_packets(&out);
    let mut expected = Vec::new();
    for f in &files {
        let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
        for p in tshark_packets(f) {
            expected.push((stem.clone(), p));
        }
    }
    assert_eq!(merged.len(), expected.len());
    // every input packet is present, with its bytes, on an interface named after its file
    for (stem, p) in &expected {
        assert!(
            merged.iter().any(|m| m.bytes == p.bytes
                && m.len == p.len
                && (m.iface_name == *stem || m.iface_name.starts_with(&format!("{stem}/")))),
            "packet of {stem} missing: {p:?}"
        );
    }
    // sorted (SPB inherit their predecessor's time)
    let ts: Vec<u64> = merged.iter().map(|m| m.ts.unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
    let names: std::collections::BTreeSet<_> =
        merged.iter().map(|m| m.iface_name.as_str()).collect();
    for n in [
        "base2-le/eth0",
        "base2-be/eth0",
        "pico-le/ps0",
        "pico-be/if1",
        "multi-section/lo",
        "multi-section/eth1",
        "classic-be-ns",
    ] {
        assert!(names.contains(n), "{n} missing from {names:?}");
    }
    // the input's NRB is passed through: tshark resolves 10.0.0.1 with -N n
    let hosts = run_ok(tool("tshark").arg("-r").arg(&out).args([
        "-N",
        "n",
        "-T",
        "fields",
        "-e",
        "ip.src_host",
    ]));
    assert!(String::from_utf8_lossy(&hosts.stdout).contains("client.test"));
    let info = capinfos_clean(&out);
    assert!(info.contains("Capture application: podcap-merge"), "{info}");
}

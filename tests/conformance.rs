//! Every public pcapng conformance file (both byte orders): our decoder agrees with tshark on
//! packet count, timestamps (ns), lengths, bytes and interface per packet — fed whole and in
//! odd-sized pieces, as a live stream would arrive; merged alone, each reads back the same; its
//! copyable custom blocks are copied and its do-not-copy ones are not.

mod common;

use common::*;
use std::path::PathBuf;

fn conformance_files() -> Option<Vec<PathBuf>> {
    let dir = shared_dir()?.join("conformance/pcapng-test-generator");
    let mut files = Vec::new();
    for order in ["output_le", "output_be"] {
        for cat in ["basic", "advanced", "difficult"] {
            let d = dir.join(order).join(cat);
            for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "pcapng") {
                    files.push(p);
                }
            }
        }
    }
    files.sort();
    Some(files)
}

#[test]
fn decoder_agrees_with_tshark_on_every_conformance_file() {
    let Some(files) = conformance_files() else {
        return;
    };
    assert!(
        files.len() >= 48,
        "expected the whole suite, found {}",
        files.len()
    );
    let mut packets = 0;
    for f in &files {
        let theirs: Vec<_> = tshark_packets(f)
            .into_iter()
            .map(|p| (p.ts, p.len, p.cap_len, p.iface_id, p.bytes))
            .collect();
        for chunk in [usize::MAX, 1, 7, 64] {
            let ours = decode_file(f, chunk.min(1 << 20));
            assert_eq!(ours, theirs, "{} (chunks of {chunk})", f.display());
        }
        packets += theirs.len();
    }
    assert!(packets > 100, "only {packets} packets compared");
}

#[test]
fn merged_conformance_files_are_read_back_identically() {
    let Some(files) = conformance_files() else {
        return;
    };
    // Merge each file alone: packet for packet, what tshark reads from our output equals what it
    // reads from the input (timestamps of SPBs are inherited, so compare those separately).
    let dir = tmpdir();
    for f in &files {
        let out = dir.path().join("out.pcapng");
        let res = bin()
            .arg("merge")
            .arg("-w")
            .arg(&out)
            .arg(f)
            .output()
            .unwrap();
        assert!(
            res.status.success(),
            "{}: {}",
            f.display(),
            String::from_utf8_lossy(&res.stderr)
        );
        let theirs = tshark_packets(f);
        let ours = tshark_packets(&out);
        assert_eq!(ours.len(), theirs.len(), "{}", f.display());
        for (o, t) in ours.iter().zip(&theirs) {
            assert_eq!(
                (o.len, o.cap_len, &o.bytes),
                (t.len, t.cap_len, &t.bytes),
                "{}",
                f.display()
            );
            if t.ts.is_some() {
                assert_eq!(o.ts, t.ts, "{}", f.display());
            }
            assert!(o.ts.is_some(), "every output packet has a timestamp");
        }
        capinfos_clean(&out);
    }
}

/// "PEN\tCOPY\tDATA" of every custom block tshark reads (COPY: 1 = may be copied).
fn custom_blocks(path: &std::path::Path) -> Vec<String> {
    let o = run_ok(tool("tshark").arg("-r").arg(path).args([
        "-T",
        "fields",
        "-e",
        "frame.cb_pen",
        "-e",
        "frame.cb_copy",
        "-e",
        "data.data",
    ]));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_owned)
        .collect()
}

#[test]
fn copyable_custom_blocks_of_conformance_files_are_copied_the_others_not() {
    let Some(files) = conformance_files() else {
        return;
    };
    let dir = tmpdir();
    let (mut copied, mut not_copied) = (0, 0);
    for f in &files {
        let theirs = custom_blocks(f);
        if theirs.is_empty() {
            continue;
        }
        let (copy, no_copy): (Vec<String>, Vec<String>) = theirs
            .into_iter()
            .partition(|l| l.split('\t').nth(1) == Some("1"));
        let out = dir.path().join("out.pcapng");
        run_ok(bin().arg("merge").arg("-q").arg("-w").arg(&out).arg(f));
        // the copyable ones, in order, with their data; none of the others
        assert_eq!(custom_blocks(&out), copy, "{}", f.display());
        copied += copy.len();
        not_copied += no_copy.len();
    }
    assert!(
        copied >= 8 && not_copied >= 4,
        "only {copied} copyable and {not_copied} do-not-copy custom blocks in the suite"
    );
}

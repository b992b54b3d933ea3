//! Every time flag takes the same forms (`300ms`, `2s`, `1.5`, `1h`): a live run stopped by
//! `--duration 1500ms` / `-a duration:1.5s` with a `--reorder-window` in seconds, read back by
//! tshark.

mod common;

use common::*;
use std::time::{Duration, Instant};

fn capture_for(stop: &[&str]) {
    let dir = tmpdir();
    let input = dir.path().join("in.pcap");
    let recs: Vec<_> = (0..5u32)
        .map(|i| (1_700_000_000 + i, 0, frame(100, i), 100))
        .collect();
    std::fs::write(&input, pcap_file(false, false, 1, &recs)).unwrap();
    let out = dir.path().join("out.pcapng");
    let started = Instant::now();
    let res = bin()
        .arg("-q")
        .arg("--cmd")
        // the command outlives the run: only the time flag ends it
        .arg(format!("a=cat {}; sleep 30", input.display()))
        .args(["--reorder-window", "0.2"])
        .args(stop)
        .arg("-w")
        .arg(&out)
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(
        res.status.code(),
        Some(0),
        "{stop:?}: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(10),
        "{stop:?}: the run took {took:?}"
    );
    let packets = tshark_packets(&out);
    assert_eq!(packets.len(), 5, "{stop:?}");
    assert!(packets.iter().all(|p| p.iface_name == "a"), "{stop:?}");
}

#[test]
fn duration_with_a_unit_and_a_window_in_seconds() {
    capture_for(&["--duration", "1500ms"]);
}

#[test]
fn autostop_duration_with_a_unit() {
    capture_for(&["-a", "duration:1.5s"]);
}

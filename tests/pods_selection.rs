//! podcap-merge following its selection as labels change (judged against the test cluster,
//! whose label-selector watch turns a relabelled pod into DELETED and its return into ADDED, as
//! a real apiserver's does): a pod relabelled out of the selector while a capture runs is let
//! go ("no longer matches the selection"), and captured again when it comes back. Needs root
//! (pods with real traffic); CI runs as root.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::cluster::{have_kubectl, Server};
use common::{tmpdir, tshark_packets, wait_until};

#[test]
fn podcap_merge_lets_a_relabelled_pod_go_and_captures_it_again_when_it_returns() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "needs root (pods with real traffic); CI runs as root"
    );
    have_kubectl();
    let s = Server::start(2, &[]);
    let pods = s.pod_names();
    let moved = pods[0].clone();
    let dir = tmpdir();
    let out = dir.path().join("selection.pcapng");
    let run = s
        .podcap()
        .args(["-l", "app=mando", "--duration", "9", "-w"])
        .arg(&out)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("podcap-merge");
    // Both captures running (one capture container each, running) …
    let capturing = |name: &str, n: usize| {
        let p = s.pod_json(name);
        p["status"]["ephemeralContainerStatuses"]
            .as_array()
            .map_or(0, |a| {
                a.iter()
                    .filter(|c| c["state"]["running"].is_object())
                    .count()
            })
            >= n
    };
    assert!(wait_until(Duration::from_secs(5), || pods
        .iter()
        .all(|p| capturing(p, 1))));
    std::thread::sleep(Duration::from_millis(1500));
    // … then the pod leaves the selection, and comes back 2 s later.
    s.ok(&[
        "label",
        "pod",
        &moved,
        "-n",
        "shop",
        "app=elsewhere",
        "--overwrite",
    ]);
    let left_at = std::time::SystemTime::now();
    std::thread::sleep(Duration::from_secs(2));
    s.ok(&[
        "label",
        "pod",
        &moved,
        "-n",
        "shop",
        "app=mando",
        "--overwrite",
    ]);
    let back_at = std::time::SystemTime::now();
    let result = run.wait_with_output().expect("podcap-merge");
    let err = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "shop/{moved}: no longer matches the selection; its capture ends"
        )),
        "{err}"
    );
    // Its capture stopped while it was away, and a new one began when it came back: a second
    // capture container, and packets on its interface after its return.
    let p = s.pod_json(&moved);
    let containers = p["spec"]["ephemeralContainers"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(
        containers, 2,
        "one capture before it left, one after it came back: {err}"
    );
    let ns = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64
    };
    let pkts = tshark_packets(&out);
    // the second capture is a second interface, named apart: `shop/POD/any#2`
    let first = format!("shop/{moved}/any");
    let second = format!("{first}#2");
    let on = |name: &str| -> Vec<u64> {
        pkts.iter()
            .filter(|p| p.iface_name == name)
            .filter_map(|p| p.ts)
            .collect()
    };
    let (one, two) = (on(&first), on(&second));
    assert!(
        one.iter().all(|t| *t < ns(left_at) + 1_000_000_000),
        "the first capture went on after the pod left\n{err}"
    );
    assert!(
        two.iter().all(|t| *t > ns(back_at) - 1_000_000_000),
        "the second capture began before the pod came back\n{err}"
    );
    let mine: Vec<u64> = one.into_iter().chain(two).collect();
    let before = mine.iter().filter(|t| **t < ns(left_at)).count();
    let away = mine
        .iter()
        .filter(|t| **t > ns(left_at) + 1_000_000_000 && **t < ns(back_at))
        .count();
    let after = mine.iter().filter(|t| **t > ns(back_at)).count();
    assert!(before >= 5, "{before} packets before it left\n{err}");
    assert_eq!(away, 0, "captured while it was out of the selection\n{err}");
    assert!(after >= 5, "{after} packets after it came back\n{err}");
    let other = pkts
        .iter()
        .filter(|p| p.iface_name == format!("shop/{}/any", pods[1]))
        .count();
    assert!(other >= 20, "the other pod's capture went on: {other}");
}

//! `podcap-merge demo` end to end: the in-process test cluster, its pods' workload (ping, a
//! curl loop, HTTP servers, each pod in its own network namespace), one merged file read by
//! tshark. A machine without ping or curl gets one readable line saying so, not a raw log line
//! per pod. Needs root (network namespaces); CI runs as root.

mod common;

use common::cluster::testcluster_bin;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn assert_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the demo tests need root (the demo pods' network namespaces); CI runs as root"
    );
}

/// A directory to use as the whole PATH: every program on the current PATH except `without`.
fn path_without(dir: &Path, without: &[&str]) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    for d in path.split(':').filter(|d| !d.is_empty()) {
        let Ok(entries) = std::fs::read_dir(d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if without.iter().any(|w| name == *w) || bin.join(&name).exists() {
                continue;
            }
            let _ = std::os::unix::fs::symlink(e.path(), bin.join(&name));
        }
    }
    for w in without {
        assert!(!bin.join(w).exists(), "{w} still on the PATH");
    }
    bin
}

fn demo(dir: &Path, path: Option<&Path>) -> (Output, PathBuf) {
    let out = dir.join("demo.pcapng");
    let mut cmd = bin();
    cmd.arg("demo")
        .arg("-w")
        .arg(&out)
        .args(["--pods", "2", "--duration", "3s"])
        .stdin(Stdio::null());
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    let res = cmd.output().expect("run the demo");
    (res, out)
}

/// Frames tshark reads with the display filter `filter`.
fn count(out: &Path, filter: &str) -> usize {
    let o = run_ok(tool("tshark").arg("-r").arg(out).args(["-Y", filter]));
    String::from_utf8_lossy(&o.stdout).lines().count()
}

#[test]
fn demo_captures_the_pods_ping_and_http_traffic() {
    assert_root();
    let dir = tmpdir();
    let (res, out) = demo(dir.path(), None);
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(0), "{err}");
    assert!(!err.contains("not found on the PATH"), "{err}");
    capinfos_clean(&out);
    assert!(count(&out, "icmp.type == 8") > 0, "no ping: {err}");
    assert!(count(&out, "http.request") > 0, "no HTTP request: {err}");
}

#[test]
fn demo_without_ping_and_curl_says_so_in_one_line() {
    assert_root();
    for missing in [&["ping", "curl"][..], &["curl"][..]] {
        let dir = tmpdir();
        let path = path_without(dir.path(), missing);
        let (res, out) = demo(dir.path(), Some(&path));
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(0), "{missing:?}: {err}");
        // one readable line naming what is missing and how to install it…
        let said: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("not found on the PATH"))
            .collect();
        assert_eq!(said.len(), 1, "{missing:?}: {err}");
        let packages = if missing.len() == 2 {
            "apt-get install iputils-ping curl"
        } else {
            "apt-get install curl"
        };
        assert!(
            said[0].starts_with("podcap-merge demo: ") && said[0].contains(packages),
            "{missing:?}: {}",
            said[0]
        );
        assert_eq!(
            said[0].contains("ping"),
            missing.contains(&"ping"),
            "{}",
            said[0]
        );
        // …and no raw log lines
        for l in err.lines() {
            assert!(
                !l.contains("WARN") && !l.contains("executable file not found"),
                "{missing:?}: raw log line: {l}\n{err}"
            );
        }
        // the demo still works with what is there
        capinfos_clean(&out);
        assert_eq!(count(&out, "http.request"), 0, "{missing:?}");
        assert_eq!(
            count(&out, "icmp.type == 8") > 0,
            !missing.contains(&"ping"),
            "{missing:?}: {err}"
        );
    }
}

#[test]
fn the_test_cluster_binary_says_it_once_too() {
    assert_root();
    let dir = tmpdir();
    let path = path_without(dir.path(), &["ping"]);
    let kubeconfig = dir.path().join("kubeconfig");
    let child = Command::new(testcluster_bin())
        .args(["--pods", "3", "--kubeconfig"])
        .arg(&kubeconfig)
        .env("PATH", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn podcap-testcluster");
    assert!(
        wait_until(std::time::Duration::from_secs(30), || kubeconfig.exists()),
        "podcap-testcluster did not start"
    );
    // let the pods' workload start (and fail, were it to try ping)
    std::thread::sleep(std::time::Duration::from_secs(1));
    // SAFETY: plain kill(2) on our own child; SIGTERM makes it clean up its namespaces.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let res = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&res.stderr);
    let said: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("not found on the PATH"))
        .collect();
    assert_eq!(
        said,
        ["podcap-testcluster: ping not found on the PATH: the demo pods run without ping traffic (install with `apt-get install iputils-ping`)"],
        "{err}"
    );
    assert!(!err.contains("WARN"), "{err}");
}

//! Wireshark's extcap interface end to end: podcap-merge linked into the global extcap
//! directory of the real tshark (4.0 has no per-user one), listed by `tshark -D`, capturing
//! the test cluster's pods through `tshark -i podcap -o extcap.podcap.namespace:shop`; and the
//! calls Wireshark makes (config, filter check, capture into a fifo, its SIGTERM) made directly
//! as Wireshark makes them. Needs root (the extcap directory, the pods' network namespaces).

mod common;

use common::cluster::Server;
use common::*;
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long after the capture ends every capture process in the pods must be gone.
const CLEANUP_BOUND: Duration = Duration::from_secs(3);

/// The tests that place the link in the one global directory take turns.
static GLOBAL_DIR: Mutex<()> = Mutex::new(());

fn assert_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the extcap tests need root (Wireshark's global extcap directory, network namespaces); \
         CI runs as root"
    );
}

/// The link `podcap-merge extcap install` placed, removed when the test ends (also when it
/// fails), with `extcap uninstall`, and checked gone.
struct Installed {
    link: PathBuf,
}

impl Installed {
    fn new() -> Installed {
        let out = run_ok(bin().args(["extcap", "install"]));
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        let dir = extcap_dir_of_tshark();
        let link = dir.join("podcap-merge");
        assert!(
            said.contains(&link.display().to_string()),
            "install should say where: {said}"
        );
        let target = std::fs::read_link(&link).expect("a link");
        assert_eq!(
            target.canonicalize().unwrap(),
            Path::new(env!("CARGO_BIN_EXE_podcap-merge"))
                .canonicalize()
                .unwrap()
        );
        Installed { link }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let out = bin().args(["extcap", "uninstall"]).output();
        let gone = std::fs::symlink_metadata(&self.link).is_err();
        if !std::thread::panicking() {
            let out = out.expect("run extcap uninstall");
            assert!(out.status.success(), "{out:?}");
            assert!(gone, "{} is still there", self.link.display());
        } else if !gone {
            let _ = std::fs::remove_file(&self.link);
        }
    }
}

/// The directory `extcap install` uses: tshark's personal extcap path where it has one (4.2
/// and later), else its global one (4.0, as on Debian 12).
fn extcap_dir_of_tshark() -> PathBuf {
    let out = run_ok(tool("tshark").args(["-G", "folders"]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| PathBuf::from(v.trim()))
        })
    };
    field("Personal Extcap path")
        .or_else(|| field("Extcap path"))
        .expect("tshark -G folders names the extcap path")
}

/// tshark with the cluster's kubeconfig in its environment (our extcap inherits it).
fn tshark(s: &Server) -> Command {
    let mut c = tool("tshark");
    c.env("KUBECONFIG", s.kubeconfig()).stdin(Stdio::null());
    c
}

fn interfaces(path: &Path) -> BTreeSet<String> {
    tshark_packets(path)
        .into_iter()
        .map(|p| p.iface_name)
        .collect()
}

fn pods_of(s: &Server) -> BTreeSet<String> {
    s.pod_names()
        .iter()
        .map(|p| format!("shop/{p}/any"))
        .collect()
}

fn assert_no_captures_left(s: &Server) {
    assert!(
        wait_until(CLEANUP_BOUND, || s.captures().is_empty()),
        "capture processes still running in the pods {CLEANUP_BOUND:?} after the capture \
         ended: {:?}",
        s.captures()
    );
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn tshark_lists_the_pods_interface_and_captures_every_pod_through_it() {
    assert_root();
    let _turn = GLOBAL_DIR.lock().unwrap_or_else(|e| e.into_inner());
    let s = Server::pods(3);
    let _link = Installed::new();

    // the interface list
    let (list, _) = text(&run_ok(tshark(&s).arg("-D")));
    assert!(
        list.lines()
            .any(|l| l.ends_with(". podcap (Kubernetes pods (podcap-merge))")),
        "tshark -D does not list the interface:\n{list}"
    );

    // the capture: namespace as a preference, every pod, five seconds
    let dir = tmpdir();
    let out = dir.path().join("pods.pcapng");
    let start = Instant::now();
    let o = tshark(&s)
        .args(["-i", "podcap", "-o", "extcap.podcap.namespace:shop"])
        .args(["-a", "duration:5", "-w"])
        .arg(&out)
        .output()
        .expect("run tshark");
    let (_, err) = text(&o);
    assert!(o.status.success(), "tshark failed: {err}");
    // anything our program prints on stderr, Wireshark reports as an error of the capture
    assert!(!err.contains("Error by extcap pipe"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    capinfos_clean(&out);
    assert_eq!(interfaces(&out), pods_of(&s), "{err}");
    let pkts = tshark_packets(&out);
    assert!(pkts.len() >= 30, "only {} packets", pkts.len());
    assert_no_captures_left(&s);

    // Wireshark's capture filter field (-f) and the dialog's settings as preferences
    let out = dir.path().join("icmp.pcapng");
    let o = tshark(&s)
        .args(["-i", "podcap", "-f", "icmp"])
        .args(["-o", "extcap.podcap.namespace:shop"])
        .args(["-o", "extcap.podcap.selector:app=mando"])
        .args(["-o", "extcap.podcap.reorderwindow:200ms"])
        .arg("-o")
        .arg(format!(
            "extcap.podcap.kubeconfig:{}",
            s.kubeconfig().display()
        ))
        .args(["-a", "duration:4", "-w"])
        .arg(&out)
        .output()
        .expect("run tshark");
    let (_, err) = text(&o);
    assert!(o.status.success(), "tshark failed: {err}");
    assert!(!err.contains("Error by extcap pipe"), "{err}");
    assert_eq!(interfaces(&out), pods_of(&s), "{err}");
    let protos =
        run_ok(
            tool("tshark")
                .arg("-r")
                .arg(&out)
                .args(["-T", "fields", "-e", "_ws.col.Protocol"]),
        );
    let protos: BTreeSet<String> = String::from_utf8_lossy(&protos.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(protos, BTreeSet::from(["ICMP".to_string()]));
    assert_no_captures_left(&s);

    // a selection that names no pod: the error reaches Wireshark, and tshark does not hang
    let start = Instant::now();
    let o = tshark(&s)
        .args(["-i", "podcap", "-o", "extcap.podcap.namespace:nowhere"])
        .args(["-a", "duration:30", "-w"])
        .arg(dir.path().join("none.pcapng"))
        .output()
        .expect("run tshark");
    let (_, err) = text(&o);
    assert!(
        err.contains("Error by extcap pipe: podcap-merge: error:") && err.contains("nowhere"),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "tshark waited {:?} for a capture that could not start",
        start.elapsed()
    );
}

/// Wireshark's own calls, made directly.
fn extcap(s: &Server, args: &[&str]) -> Output {
    let o = bin()
        .args(args)
        .env("KUBECONFIG", s.kubeconfig())
        .stdin(Stdio::null())
        .output()
        .expect("run podcap-merge");
    assert!(o.status.success(), "{args:?}: {o:?}");
    o
}

#[test]
fn the_options_dialog_offers_the_clusters_namespaces_and_the_context() {
    let s = Server::pods(1);
    let (cfg, err) = text(&extcap(
        &s,
        &["--extcap-config", "--extcap-interface", "podcap"],
    ));
    assert_eq!(err, "");
    // the cluster's live namespace list, the context's own selected
    let ns: Vec<&str> = cfg
        .lines()
        .filter(|l| l.starts_with("value {arg=2}"))
        .collect();
    assert!(
        ns.contains(&"value {arg=2}{value=shop}{display=shop}{default=true}"),
        "{cfg}"
    );
    assert!(
        ns.contains(&"value {arg=2}{value=default}{display=default}"),
        "{cfg}"
    );
    let cluster_ns = s.ok(&["get", "namespaces", "-o", "name"]);
    assert_eq!(
        ns.len(),
        cluster_ns.lines().count() + 1,
        "{cfg}\n{cluster_ns}"
    );
    // the contexts of the kubeconfig
    let ctx = s.ok(&["config", "current-context"]);
    assert!(
        cfg.contains(&format!(
            "value {{arg=1}}{{value={0}}}{{display={0}}}{{default=true}}",
            ctx.trim()
        )),
        "{cfg}"
    );
    for call in [
        "--kubeconfig",
        "--context",
        "--namespace",
        "--selector",
        "--pods",
        "--filter",
        "--interface",
        "--image",
        "--reorder-window",
    ] {
        assert!(cfg.contains(&format!("{{call={call}}}")), "{call}:\n{cfg}");
    }
    // the dialog's reload button asks again for the namespaces of the context chosen
    let (values, _) = text(&extcap(
        &s,
        &[
            "--extcap-config",
            "--extcap-interface",
            "podcap",
            "--extcap-reload-option",
            "namespace",
            "--context",
            ctx.trim(),
        ],
    ));
    assert!(
        values.lines().all(|l| l.starts_with("value {arg=2}")),
        "{values}"
    );
    assert!(values.contains("{value=shop}"), "{values}");

    // a cluster that does not answer: the dialog still opens, saying why the list is missing
    let dir = tmpdir();
    let dead = dir.path().join("kubeconfig");
    let mut kc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.kubeconfig()).unwrap()).expect("kubeconfig");
    kc["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1".into();
    std::fs::write(&dead, kc.to_string()).unwrap();
    let start = Instant::now();
    let (cfg, _) = text(&extcap(
        &s,
        &[
            "--extcap-config",
            "--extcap-interface",
            "podcap",
            "--kubeconfig",
            dead.to_str().unwrap(),
        ],
    ));
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    assert!(
        cfg.contains("{value=shop}{display=shop (the namespace list is unavailable:"),
        "{cfg}"
    );
}

#[test]
fn the_capture_filter_field_is_checked_by_the_local_tcpdump() {
    let s = Server::pods(1);
    let check = |f: &str| {
        text(&extcap(
            &s,
            &["--extcap-capture-filter", f, "--extcap-interface", "podcap"],
        ))
        .0
    };
    assert_eq!(check("tcp port 80 and host 10.244.0.3"), "");
    let bad = check("tcp prot 80");
    assert!(bad.starts_with("tcpdump: "), "{bad}");
    assert!(bad.contains("syntax error"), "{bad}");
}

#[test]
fn wiresharks_stop_ends_every_pods_capture_and_the_stream_is_complete() {
    assert_root();
    let s = Server::pods(2);
    let dir = tmpdir();
    let fifo = dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    // as Wireshark starts it: our program first, then the reader of the fifo
    let mut child = bin()
        .args(["--capture", "--extcap-interface", "podcap", "--fifo"])
        .arg(&fifo)
        .args(["--namespace", "shop", "--selector", "app=mando"])
        .args(["--interface", "any", "--reorder-window", "300ms"])
        .env("KUBECONFIG", s.kubeconfig())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn podcap-merge");
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            std::fs::File::open(&fifo)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .expect("read the fifo");
            bytes
        })
    };
    assert!(
        wait_until(Duration::from_secs(20), || s.captures().len() == 2),
        "the pods' captures did not start: {:?}",
        s.captures()
    );
    std::thread::sleep(Duration::from_secs(2));
    // Wireshark's stop button
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let start = Instant::now();
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(err, "", "Wireshark would show this as an error");
    let bytes = reader.join().expect("reader");
    let out = dir.path().join("stream.pcapng");
    std::fs::write(&out, bytes).unwrap();
    capinfos_clean(&out);
    assert_eq!(interfaces(&out), pods_of(&s));
    assert_no_captures_left(&s);
}

//! `cargo bench` entry point (harness = false): runs benches/vs_mergecap.sh, which builds the
//! release binary, generates the inputs (8 × 200,000 packets, reused between runs), checks
//! podcap-merge's output and times it against `mergecap` and `cat`; then
//! benches/copies_vs_mergecap.sh, which times the offline merge with copy recognition (the
//! default), with `--dedup` and without it (`--no-link`) against `mergecap`, on those inputs and
//! on a corpus with real pairs (every packet captured by two pods); then
//! benches/live_vs_offline.sh, which times the live engine (8 `--cmd 'cat FILE'` sources)
//! against the offline merge and `mergecap` on the same inputs, and measures its peak RSS with
//! 32 sources; then benches/pods_vs_kubectl.sh (NEEDS ROOT, fails otherwise), which starts
//! the local test cluster with a fake tcpdump that streams a generated file as fast as it can,
//! and times podcap-merge capturing 8 pods at once against `kubectl attach`/`exec` of one pod
//! on the same cluster, and measures its peak RSS with 32 pods; then benches/latency.sh
//! (NEEDS ROOT), the live merge's latency from capture to write and its late packets with
//! real tcpdumps in network namespaces, prompt and block-delivering (docs/design.md §8).
//!
//! The scale and the rest are set through the scripts' environment variables, e.g.
//! `BENCH_SCALE=small cargo bench --bench merge` for a quick smoke run (8 × 20,000 packets).
//! Arguments that cargo passes that start with `-` (`--bench`) are ignored; other arguments
//! are filters: only the scripts whose name contains one of them run
//! (`cargo bench --bench merge -- live` runs only live_vs_offline.sh, `-- pods` only
//! pods_vs_kubectl.sh, `-- copies` only copies_vs_mergecap.sh, `-- latency` only latency.sh). All scripts run even
//! when the first fails; the exit status is the first non-zero one.

use std::path::Path;
use std::process::{exit, Command};

const SCRIPTS: [&str; 5] = [
    "vs_mergecap.sh",
    "copies_vs_mergecap.sh",
    "live_vs_offline.sh",
    "pods_vs_kubectl.sh",
    "latency.sh",
];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut code = 0;
    for name in SCRIPTS {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let script = root.join("benches").join(name);
        let mut cmd = Command::new("bash");
        cmd.arg(&script).current_dir(root);
        // `cargo bench` has just built the binary with the bench profile (which inherits the
        // release profile, into target/release): use it rather than run a nested cargo build.
        if std::env::var_os("PODCAP_BIN").is_none() {
            cmd.env("PODCAP_BIN", env!("CARGO_BIN_EXE_podcap-merge"));
        }
        // podcap-testcluster lives in its own workspace crate: cargo builds it beside ours
        // (`cargo bench --workspace`, or `cargo build --release -p podcap-testcluster`).
        let tc = Path::new(env!("CARGO_BIN_EXE_podcap-merge")).with_file_name("podcap-testcluster");
        if std::env::var_os("PODCAP_TESTCLUSTER_BIN").is_none() && tc.exists() {
            cmd.env("PODCAP_TESTCLUSTER_BIN", &tc);
        }
        let c = match cmd.status() {
            Ok(status) => status.code().unwrap_or(1),
            Err(e) => {
                eprintln!("cannot run {}: {e}", script.display());
                1
            }
        };
        if code == 0 {
            code = c;
        }
    }
    exit(code);
}

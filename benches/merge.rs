//! `cargo bench` entry point (harness = false): runs benches/vs_mergecap.sh, which builds the
//! release binary, generates the inputs (8 × 200,000 packets, reused between runs), checks
//! podcap-merge's output and times it against `mergecap` and `cat`.
//!
//! The scale and the rest are set through the script's environment variables, e.g.
//! `BENCH_SCALE=small cargo bench --bench merge` for a quick smoke run (8 × 20,000 packets).
//! Arguments that cargo passes (`--bench`, filters) are ignored.

use std::path::Path;
use std::process::{exit, Command};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("benches").join("vs_mergecap.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).current_dir(root);
    // `cargo bench` has just built the binary with the bench profile (which inherits the
    // release profile, into target/release): use it rather than run a nested cargo build.
    if std::env::var_os("PODCAP_BIN").is_none() {
        cmd.env("PODCAP_BIN", env!("CARGO_BIN_EXE_podcap-merge"));
    }
    match cmd.status() {
        Ok(status) => exit(status.code().unwrap_or(1)),
        Err(e) => {
            eprintln!("cannot run {}: {e}", script.display());
            exit(1);
        }
    }
}

//! What users install: the krew manifest of `kubectl podcap` (valid YAML, naming the archives
//! and the binary deploy/release.sh builds; the script run for real on this machine's platform,
//! its archive unpacked and run as krew would link it), and the Dockerfile of the in-cluster
//! Job image (parsed, since no container engine runs here, and checked against the workspace:
//! the Rust version, the cargo command, the path the binary is copied from and run as).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load_yaml(text: &str) -> Yaml {
    let mut docs = YamlLoader::load_from_str(text).expect("valid YAML");
    assert_eq!(docs.len(), 1, "one YAML document");
    docs.remove(0)
}

fn s<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {y:?}"))
}

/// This machine's platform in krew's words (os-arch).
fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no krew arch for {other}"),
    };
    format!("{}-{arch}", std::env::consts::OS)
}

/// The checks krew's own validation makes on a manifest, and ours: the plugin is `podcap`
/// (kubectl podcap), the version is the crate's, every platform's archive is the one the
/// release script names and holds the podcap-merge binary as `bin`.
fn check_manifest(m: &Yaml) -> Vec<(String, String, String)> {
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        s(&m["apiVersion"], "apiVersion"),
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(s(&m["kind"], "kind"), "Plugin");
    assert_eq!(s(&m["metadata"]["name"], "metadata.name"), "podcap");
    let spec = &m["spec"];
    assert_eq!(s(&spec["version"], "spec.version"), format!("v{version}"));
    assert!(!s(&spec["shortDescription"], "shortDescription").is_empty());
    assert!(!s(&spec["description"], "description").is_empty());
    let platforms = spec["platforms"].as_vec().expect("spec.platforms");
    assert!(!platforms.is_empty());
    let mut out = Vec::new();
    for p in platforms {
        let labels = &p["selector"]["matchLabels"];
        let os = s(&labels["os"], "os");
        let arch = s(&labels["arch"], "arch");
        let uri = s(&p["uri"], "uri");
        let archive = format!("podcap-merge-v{version}-{os}-{arch}.tar.gz");
        assert!(uri.ends_with(&format!("/{archive}")), "{uri}");
        let bin = s(&p["bin"], "bin");
        // the binary the release builds: Cargo.toml's [[bin]], which cargo built for this test
        assert_eq!(bin, "podcap-merge");
        assert!(Path::new(env!("CARGO_BIN_EXE_podcap-merge")).ends_with(bin));
        let files = p["files"].as_vec().expect("files");
        assert!(
            files
                .iter()
                .any(|f| f["from"].as_str() == Some(bin) && f["to"].as_str() == Some(".")),
            "{os}-{arch}: the files do not bring {bin}"
        );
        out.push((
            format!("{os}-{arch}"),
            uri.to_string(),
            s(&p["sha256"], "sha256").to_string(),
        ));
    }
    out
}

#[test]
fn the_krew_manifest_names_what_the_release_script_builds() {
    let template = std::fs::read_to_string(repo().join("deploy/krew/podcap.yaml")).unwrap();
    let platforms = check_manifest(&load_yaml(&template));
    assert!(platforms.iter().any(|(p, _, _)| *p == host_platform()));

    // the release script, for this machine's platform, from the binary cargo built
    let dir = tmpdir();
    let out = dir.path().join("release");
    let ran = run_ok(
        Command::new("bash")
            .arg(repo().join("deploy/release.sh"))
            .args(["--base-url", "https://releases.example.invalid/v1/"])
            .arg("--out")
            .arg(&out)
            .arg("--platform")
            .arg(format!(
                "{}={}",
                host_platform(),
                env!("CARGO_BIN_EXE_podcap-merge")
            )),
    );
    let said = String::from_utf8_lossy(&ran.stderr);
    let rendered = std::fs::read_to_string(out.join("podcap.yaml")).expect("manifest written");
    let built = check_manifest(&load_yaml(&rendered));
    assert_eq!(built.len(), 1, "only the platform built: {rendered}");
    let (platform, uri, sha) = &built[0];
    assert_eq!(*platform, host_platform());
    for (p, _, _) in platforms.iter().filter(|(p, _, _)| *p != host_platform()) {
        assert!(said.contains(&format!("{p} left out")), "{said}");
    }
    let archive = out.join(uri.rsplit('/').next().unwrap());
    assert_eq!(
        *uri,
        format!(
            "https://releases.example.invalid/v1/{}",
            archive.file_name().unwrap().to_string_lossy()
        )
    );
    let sum = run_ok(Command::new("sha256sum").arg(&archive));
    assert_eq!(
        String::from_utf8_lossy(&sum.stdout)
            .split_whitespace()
            .next(),
        Some(sha.as_str())
    );
    // unpacked as krew does, linked under the plugin's name, it is `kubectl podcap`
    let root = dir.path().join("unpacked");
    std::fs::create_dir(&root).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(&archive)
            .arg("-C")
            .arg(&root),
    );
    let mut listed: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, ["README.md", "podcap-merge"]);
    let link = root.join("kubectl-podcap");
    std::os::unix::fs::symlink(root.join("podcap-merge"), &link).unwrap();
    let help = run_ok(Command::new(&link).arg("--help"));
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage: kubectl podcap "));
}

/// One Dockerfile instruction: the keyword and its arguments, continuation lines joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

fn parse_dockerfile(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let t = line.trim();
        if pending.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(cont) = t.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        pending.push_str(t);
        let (kw, args) = pending
            .split_once(char::is_whitespace)
            .expect("KEYWORD ARGS");
        let keyword = kw.to_ascii_uppercase();
        assert!(
            [
                "FROM",
                "WORKDIR",
                "COPY",
                "RUN",
                "USER",
                "ENTRYPOINT",
                "CMD",
                "ENV",
                "ARG",
                "LABEL"
            ]
            .contains(&keyword.as_str()),
            "unknown instruction {kw}"
        );
        out.push(Instruction {
            keyword,
            args: args.trim().to_string(),
        });
        pending.clear();
    }
    assert!(
        pending.is_empty(),
        "the Dockerfile ends inside a continued line"
    );
    out
}

#[test]
fn the_dockerfile_builds_the_binary_it_runs() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let ins = parse_dockerfile(&text);
    // stages: FROM IMAGE [AS NAME]
    let stages: Vec<(usize, Vec<&str>)> = ins
        .iter()
        .enumerate()
        .filter(|(_, i)| i.keyword == "FROM")
        .map(|(n, i)| (n, i.args.split_whitespace().collect()))
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let (b0, build) = &stages[0];
    let (r0, runtime) = &stages[1];
    assert_eq!(build.len(), 3, "FROM rust:VERSION AS NAME");
    assert!(
        runtime.len() == 1 && runtime[0].contains(':'),
        "the runtime stage is one pinned image: {runtime:?}"
    );
    assert!(build[1].eq_ignore_ascii_case("as"));
    let build_name = build[2];
    // the Rust image is at least the crate's rust-version
    let (image, tag) = build[0].split_once(':').expect("a pinned tag");
    assert_eq!(image, "rust");
    let image_rust: Vec<u32> = tag
        .split('-')
        .next()
        .unwrap()
        .split('.')
        .map(|n| n.parse().unwrap())
        .collect();
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let needed: Vec<u32> = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("rust-version")
        .trim_matches('"')
        .split('.')
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(
        image_rust >= needed,
        "rust:{tag} is older than rust-version {needed:?}"
    );
    let build_ins = &ins[*b0..*r0];
    let runtime_ins = &ins[*r0..];
    let workdir = build_ins
        .iter()
        .find(|i| i.keyword == "WORKDIR")
        .map(|i| i.args.clone())
        .expect("WORKDIR in the build stage");
    assert!(
        build_ins
            .iter()
            .any(|i| i.keyword == "COPY" && i.args == ". ."),
        "the build stage copies the repository"
    );
    // the cargo command: release, locked, the product binary; its flags as cargo knows them
    let cargo = build_ins
        .iter()
        .find(|i| i.keyword == "RUN" && i.args.starts_with("cargo build"))
        .expect("RUN cargo build");
    let words: Vec<&str> = cargo.args.split_whitespace().collect();
    for flag in ["--release", "--locked"] {
        assert!(words.contains(&flag), "{flag} missing: {}", cargo.args);
    }
    let bin = words
        .iter()
        .position(|w| *w == "--bin")
        .map(|i| words[i + 1])
        .expect("--bin NAME");
    assert!(Path::new(env!("CARGO_BIN_EXE_podcap-merge")).ends_with(bin));
    if words.contains(&"--no-default-features") {
        // the product builds without its default features (scripts/test checks it compiles)
        assert!(manifest.contains("[features]") && manifest.contains("default = "));
    }
    // the runtime stage copies that binary from the build stage and runs it, not as root
    let built = format!("{workdir}/target/release/{bin}");
    let copy = runtime_ins
        .iter()
        .find(|i| i.keyword == "COPY")
        .expect("COPY in the runtime stage");
    let parts: Vec<&str> = copy.args.split_whitespace().collect();
    assert_eq!(
        parts,
        [&format!("--from={build_name}"), built.as_str(), parts[2]],
        "{copy:?}"
    );
    let installed = parts[2];
    let entry = runtime_ins
        .iter()
        .find(|i| i.keyword == "ENTRYPOINT")
        .expect("ENTRYPOINT");
    let argv: Vec<String> = serde_json::from_str(&entry.args).expect("ENTRYPOINT in exec form");
    assert_eq!(argv, [installed]);
    let user = runtime_ins
        .iter()
        .find(|i| i.keyword == "USER")
        .expect("USER");
    let uid: u32 = user
        .args
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric uid");
    assert_ne!(uid, 0);
    // docs/in-cluster.md's Job runs as that user (fsGroup) and points at this Dockerfile
    let doc = std::fs::read_to_string(repo().join("docs/in-cluster.md")).unwrap();
    assert!(
        doc.contains(&format!("fsGroup: {uid}")),
        "docs/in-cluster.md fsGroup"
    );
    assert!(
        doc.contains("`Dockerfile`"),
        "docs/in-cluster.md names the Dockerfile"
    );
    // the build context keeps out the local build directory
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target"));
    for needed in ["Cargo.toml", "Cargo.lock", "src", "crates"] {
        assert!(
            !ignore.lines().any(|l| l.trim() == needed),
            "{needed} kept out of the build"
        );
    }
}

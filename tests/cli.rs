//! The command line as a user meets it: the help page, the messages for a mistyped option or a
//! filter without its `--`, tcpdump's, dumpcap's and kubectl's flag habits, the shell
//! completions (run by the real bash), the man page (rendered by the real man), install-extras,
//! `extcap install --dir`, and the kubectl plugin run by the real kubectl against the test
//! cluster.

mod common;

use common::cluster::Server;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn run(args: &[&str]) -> Output {
    bin()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run podcap-merge")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn dash_h_and_dash_dash_help_show_the_same_page_pods_first_with_examples() {
    let h = run(&["-h"]);
    let help = run(&["--help"]);
    assert!(h.status.success() && help.status.success());
    assert_eq!(stdout(&h), stdout(&help));
    let page = stdout(&help);
    let first_usage = page.lines().find(|l| l.starts_with("Usage: ")).unwrap();
    assert!(
        first_usage
            .starts_with("Usage: podcap-merge [POD|KIND/NAME]... [-n NS | -A] [-l SELECTOR]"),
        "{first_usage}"
    );
    let mut last = 0;
    for heading in [
        "Selection:",
        "Capture container:",
        "Capture:",
        "Live merge:",
        "Output:",
        "Stop conditions:",
        "Examples:",
    ] {
        let at = page
            .lines()
            .position(|l| l == heading)
            .unwrap_or_else(|| panic!("no {heading} heading:\n{page}"));
        assert!(at > last, "{heading} out of order:\n{page}");
        last = at;
    }
    // examples as kubectl debug --help shows them: a comment line, then the command alone
    assert!(page.contains(
        "  # Which pods would be captured, and how (nothing is changed)\n  \
         podcap-merge -n shop -l app=mando --dry-run\n"
    ));
    for sub in ["merge", "demo", "completions", "man", "install-extras"] {
        assert_eq!(
            stdout(&run(&[sub, "-h"])),
            stdout(&run(&[sub, "--help"])),
            "{sub}"
        );
    }
}

#[test]
fn an_unknown_option_is_named_without_the_double_dash_tip() {
    let o = run(&["-n", "shop", "-l", "app=x", "--frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("unknown option '--frobnicate'"), "{err}");
    // clap's own tip would put it after --, into the capture filter
    assert!(!err.contains("-- --frobnicate"), "{err}");
    assert!(err.contains("podcap-merge --help"), "{err}");
    let err = stderr(&run(&["-n", "shop", "--selctor", "app=x"]));
    assert!(err.contains("did you mean '--selector'"), "{err}");
}

#[test]
fn a_filter_typed_as_pod_names_is_refused_with_the_double_dash_hint() {
    for args in [
        &["-n", "shop", "-l", "app=mando", "tcp", "port", "80"][..],
        &["-n", "shop", "host", "10.0.0.1"],
        &["-n", "shop", "80"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = stderr(&o);
        assert!(err.contains("looks like a capture filter"), "{err}");
        assert!(err.contains("goes after `--`"), "{err}");
    }
}

#[test]
fn a_bad_flag_value_says_what_is_accepted() {
    let err = stderr(&run(&["-l", "app=x", "--dry-run=server"]));
    assert!(err.contains("--dry-run=server is not supported"), "{err}");
    let o = run(&["-l", "app=x", "-p", "--promiscuous", "--dry-run"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["-l", "app=x", "-s", "262145", "--dry-run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("262145"), "{}", stderr(&o));
}

fn completions(shell: &str) -> String {
    let o = run(&["completions", shell]);
    assert!(o.status.success(), "{shell}: {}", stderr(&o));
    stdout(&o)
}

#[test]
fn the_bash_completion_parses_and_completes_our_options() {
    let dir = tmpdir();
    let script = dir.path().join("podcap-merge.bash");
    let text = completions("bash");
    std::fs::write(&script, &text).unwrap();
    run_ok(Command::new("bash").arg("-n").arg(&script));
    // the function the script registers for podcap-merge
    let function = text
        .lines()
        .find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.first() == Some(&"complete") && w.last() == Some(&"podcap-merge"))
                .then(|| {
                    w.iter()
                        .position(|x| *x == "-F")
                        .map(|i| w[i + 1].to_string())
                })
                .flatten()
        })
        .expect("complete -F FUNCTION podcap-merge");
    // the real bash runs the completion function as it would on <TAB>
    let complete = |line: &[&str]| {
        let words = line
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" ");
        let out = run_ok(Command::new("bash").arg("-c").arg(format!(
            "source '{}'; COMP_WORDS=({words}); COMP_CWORD={}; COMP_LINE=\"${{COMP_WORDS[*]}}\"; \
             COMP_POINT=${{#COMP_LINE}}; {function} podcap-merge '{}' '{}'; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display(),
            line.len() - 1,
            line[line.len() - 1],
            line[line.len() - 2],
        )));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(complete(&["podcap-merge", "--names"]), ["--namespace"]);
    let subs = complete(&["podcap-merge", "ins"]);
    assert_eq!(subs, ["install-extras"]);
    // a subcommand's own options, and a nested subcommand
    assert_eq!(complete(&["podcap-merge", "merge", "--na"]), ["--name"]);
    assert_eq!(complete(&["podcap-merge", "extcap", "inst"]), ["install"]);
    assert_eq!(
        complete(&["podcap-merge", "extcap", "install", "--d"]),
        ["--dir"]
    );
    let shells = complete(&["podcap-merge", "completions", ""]);
    for s in ["bash", "zsh", "fish", "powershell"] {
        assert!(shells.iter().any(|x| x == s), "{shells:?}");
    }
    // the other shells' scripts are generated from the same definitions
    assert!(completions("zsh").starts_with("#compdef podcap-merge"));
    assert!(completions("fish").contains("complete -c podcap-merge"));
    assert!(completions("powershell").contains("'podcap-merge'"));
}

/// `man -l PAGE` as a user reads it (no pager), with groff's warnings on stderr.
fn render_man(page: &Path) -> (String, String) {
    let o = tool("man")
        .args(["--warnings", "-l"])
        .arg(page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("run man");
    assert!(o.status.success(), "man -l {}: {o:?}", page.display());
    (stdout(&o), stderr(&o))
}

#[test]
fn the_man_page_renders_with_man() {
    let dir = tmpdir();
    let page = dir.path().join("podcap-merge.1");
    let o = run(&["man"]);
    assert!(o.status.success());
    std::fs::write(&page, &o.stdout).unwrap();
    let (text, warnings) = render_man(&page);
    assert_eq!(warnings, "", "groff warned");
    for section in [
        "NAME",
        "SYNOPSIS",
        "SELECTION",
        "CAPTURE CONTAINER",
        "CAPTURE",
        "LIVE MERGE",
        "OUTPUT",
        "STOP CONDITIONS",
        "SUBCOMMANDS",
        "EXAMPLES",
    ] {
        assert!(
            text.lines().any(|l| l == section),
            "no {section} section:\n{text}"
        );
    }
    assert!(text.contains("-n, --namespace <NS>"), "{text}");
    assert!(text.contains("podcap-merge -n shop -l app=mando | wireshark -k -i -"));
}

fn ours() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_podcap-merge"))
        .canonicalize()
        .unwrap()
}

#[test]
fn install_extras_puts_each_file_where_it_belongs() {
    let dir = tmpdir();
    let prefix = dir.path().join("prefix");
    let o = run_ok(bin().arg("install-extras").arg("--prefix").arg(&prefix));
    let said = stdout(&o);
    let bash = prefix.join("share/bash-completion/completions/podcap-merge");
    let zsh = prefix.join("share/zsh/site-functions/_podcap-merge");
    let fish = prefix.join("share/fish/vendor_completions.d/podcap-merge.fish");
    let man = prefix.join("share/man/man1/podcap-merge.1");
    let plugin = prefix.join("bin/kubectl-podcap");
    for f in [&bash, &zsh, &fish, &man, &plugin] {
        assert!(f.exists(), "{} missing; said:\n{said}", f.display());
        assert!(said.contains(&f.display().to_string()), "{said}");
    }
    run_ok(Command::new("bash").arg("-n").arg(&bash));
    let (_, warnings) = render_man(&man);
    assert_eq!(warnings, "");
    // the pages the SUBCOMMANDS section names are there too, and render
    for sub in [
        "merge",
        "demo",
        "extcap",
        "extcap-install",
        "install-extras",
    ] {
        let p = prefix.join(format!("share/man/man1/podcap-merge-{sub}.1"));
        assert!(p.exists(), "{} missing", p.display());
        let (text, warnings) = render_man(&p);
        assert_eq!(warnings, "", "{sub}");
        assert!(text.contains("SYNOPSIS"), "{sub}: {text}");
    }
    // the extcap link: below the prefix, where tshark's own extcap directory is below /usr
    let tshark_dir =
        String::from_utf8_lossy(&run_ok(tool("tshark").args(["-G", "folders"])).stdout)
            .lines()
            .find_map(|l| l.strip_prefix("Extcap path:").map(|p| p.trim().to_string()))
            .expect("extcap path");
    let rel = Path::new(&tshark_dir)
        .strip_prefix("/usr")
        .expect("under /usr");
    let extcap = prefix.join(rel).join("podcap-merge");
    assert_eq!(std::fs::read_link(&extcap).unwrap(), ours());
    let o = run_ok(Command::new(&extcap).arg("--extcap-interfaces"));
    assert!(
        stdout(&o).contains("interface {value=podcap}"),
        "{}",
        stdout(&o)
    );
    // the kubectl plugin link answers as `kubectl podcap`
    assert_eq!(std::fs::read_link(&plugin).unwrap(), ours());
    let o = run_ok(Command::new(&plugin).arg("--help"));
    assert!(
        stdout(&o).contains("Usage: kubectl podcap [POD|KIND/NAME]..."),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("  kubectl podcap -n shop -l app=mando | wireshark -k -i -"));
    // a second run replaces its own links
    run_ok(bin().arg("install-extras").arg("--prefix").arg(&prefix));
}

#[test]
fn extcap_install_places_the_link_in_the_directory_given_and_says_where() {
    let dir = tmpdir();
    let extcap = dir.path().join("extcap");
    let o = run_ok(bin().args(["extcap", "install", "--dir"]).arg(&extcap));
    let link = extcap.join("podcap-merge");
    assert!(
        stdout(&o).contains(&link.display().to_string()),
        "{}",
        stdout(&o)
    );
    assert_eq!(std::fs::read_link(&link).unwrap(), ours());
    let o = run_ok(bin().args(["extcap", "uninstall", "--dir"]).arg(&extcap));
    assert!(stdout(&o).contains("removed"), "{}", stdout(&o));
    assert!(std::fs::symlink_metadata(&link).is_err());
    // a file that is not our link is never replaced
    std::fs::write(&link, "#!/bin/sh\n").unwrap();
    let o = bin()
        .args(["extcap", "install", "--dir"])
        .arg(&extcap)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is not a link"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&link).unwrap(), "#!/bin/sh\n");
}

#[test]
fn kubectl_runs_it_as_the_podcap_plugin_against_the_cluster() {
    assert!(common::cluster::have_kubectl());
    let s = Server::pods(2);
    let dir = tmpdir();
    std::os::unix::fs::symlink(ours(), dir.path().join("kubectl-podcap")).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let kubectl = |args: &[&str]| {
        Command::new("kubectl")
            .args(args)
            .env("PATH", &path)
            .env("KUBECONFIG", s.kubeconfig())
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    };
    let plugins = stdout(&kubectl(&["plugin", "list"]));
    assert!(plugins.contains("kubectl-podcap"), "{plugins}");
    let help = kubectl(&["podcap", "--help"]);
    assert!(help.status.success());
    assert!(
        stdout(&help).contains("Usage: kubectl podcap [POD|KIND/NAME]..."),
        "{}",
        stdout(&help)
    );
    // a dry run through kubectl, with tcpdump's, dumpcap's and kubectl's flag habits
    let o = kubectl(&[
        "podcap",
        "-n",
        "shop",
        "-l",
        "app=mando",
        "--dry-run=client",
        "-s",
        "0",
        "-p",
        "-f",
        "tcp port 80",
    ]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "{err}");
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("shop/")).collect();
    assert_eq!(lines.len(), 2, "{out}");
    for l in lines {
        // -s 0 is the whole packet: no -s reaches tcpdump; -f arrives as the filter
        assert!(
            l.ends_with("tcpdump -i any -U --immediate-mode --time-stamp-precision=nano -p -w - -- tcp port 80"),
            "{l}"
        );
    }
    // nothing was changed
    for pod in s.pod_names() {
        let ecs = s.ok(&[
            "get",
            "pod",
            "-n",
            "shop",
            &pod,
            "-o",
            "jsonpath={.spec.ephemeralContainers[*].name}",
        ]);
        assert_eq!(ecs.trim(), "", "{pod}");
    }
    // --all: every pod of the namespace
    let o = kubectl(&["podcap", "-n", "shop", "--all", "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o)
            .lines()
            .filter(|l| l.starts_with("shop/"))
            .count(),
        2,
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("every pod in namespace shop"),
        "{}",
        stdout(&o)
    );
}

//! Wireshark's external capture (extcap) protocol: with podcap-merge linked into Wireshark's
//! extcap directory (`podcap-merge extcap install`), Wireshark and `tshark -D` list one
//! interface, `podcap` ("Kubernetes pods"), whose options dialog holds the cluster (kubeconfig,
//! context), which pods (namespace, label selector, pod names) and how they are captured
//! (filter, interface, image, reorder window). Starting it runs the ordinary pod capture with
//! those settings, its merged pcapng written into the fifo Wireshark reads; Wireshark's stop
//! (SIGTERM, or the fifo closing) stops every pod's capture as Ctrl-C does.
//!
//! One interface rather than one per kubeconfig context: the preference names Wireshark derives
//! from an interface's name (`extcap.podcap.namespace`) stay the same on every machine, so
//! `tshark -i podcap -o extcap.podcap.namespace:shop` works in scripts anywhere; contexts
//! with characters Wireshark folds into `_` (`arn:aws:eks:…/prod`) do not make unreadable
//! names; a kubeconfig with dozens of contexts does not flood the interface list; and a
//! machine with no kubeconfig at all (in-cluster) still has the interface. The context is a
//! selector in the dialog instead, and the namespace list reloads for the context chosen.
//!
//! Wireshark calls the program in these forms (tshark 4.0, checked):
//! `--extcap-interfaces --extcap-version=4.0`; `--extcap-dlts --extcap-interface podcap`;
//! `--extcap-config --extcap-interface podcap` (at every start of Wireshark or tshark, to
//! register the preferences: so it must be quick, and reach the cluster with a short bound);
//! `--extcap-config … --extcap-reload-option namespace --context C` (the dialog's reload);
//! `--extcap-capture-filter F --extcap-interface podcap` (is the filter valid? nothing printed
//! means yes: the local tcpdump judges it, as before a pod run, [`crate::k8s::precheck`]); `--capture --extcap-interface podcap --fifo PATH [--extcap-capture-filter F]
//! --namespace shop …`. Anything the program prints on stderr during a capture is shown by
//! Wireshark as an error, so the capture runs quiet and prints only real errors.

use crate::error::StartError;
use crate::flags::{self, Run};
use clap::Parser;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// The interface's name: what `tshark -i` takes and preferences are named after.
pub const INTERFACE: &str = "podcap";
/// LINUX_SLL2, what tcpdump -i any writes in each pod (the merged stream's own interface
/// descriptions carry each pod's real link type).
const DLT_LINUX_SLL2: u32 = 276;
/// How long `--extcap-config` may spend listing the namespaces (it runs at every start of
/// Wireshark and tshark).
const LIST_BOUND: Duration = Duration::from_secs(3);
/// The namespace selector's value for every namespace (`-A`).
const EVERY_NAMESPACE: &str = "*";

/// The extcap flags (Wireshark's) and the interface's settings (ours, offered by
/// `--extcap-config`).
#[derive(Parser, Debug, Default)]
#[command(
    name = "podcap-merge",
    disable_help_flag = true,
    disable_version_flag = true
)]
pub struct ExtcapCli {
    #[arg(long)]
    pub extcap_interfaces: bool,
    #[arg(long)]
    pub extcap_version: Option<String>,
    #[arg(long)]
    pub extcap_interface: Option<String>,
    #[arg(long)]
    pub extcap_dlts: bool,
    #[arg(long)]
    pub extcap_config: bool,
    #[arg(long)]
    pub extcap_reload_option: Option<String>,
    #[arg(long)]
    pub extcap_capture_filter: Option<String>,
    #[arg(long)]
    pub extcap_control_in: Option<PathBuf>,
    #[arg(long)]
    pub extcap_control_out: Option<PathBuf>,
    #[arg(long)]
    pub capture: bool,
    #[arg(long)]
    pub fifo: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Settings,
}

/// The interface's settings, as the options dialog (and `-o extcap.podcap.NAME:VALUE`) gives
/// them. Empty values count as not given.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct Settings {
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    #[arg(long)]
    pub context: Option<String>,
    #[arg(long)]
    pub namespace: Option<String>,
    #[arg(long)]
    pub selector: Option<String>,
    #[arg(long)]
    pub pods: Option<String>,
    #[arg(long)]
    pub filter: Option<String>,
    #[arg(long)]
    pub interface: Option<String>,
    #[arg(long)]
    pub image: Option<String>,
    #[arg(long)]
    pub reorder_window: Option<String>,
    /// A boolflag: Wireshark passes it only when ticked.
    #[arg(long)]
    pub dedup: bool,
    /// A boolflag, as `dedup`.
    #[arg(long)]
    pub correct_skew: bool,
}

/// Is this an extcap call? (Any of Wireshark's extcap flags before a `--`.)
pub fn invoked(args: &[OsString]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .filter_map(|a| a.to_str())
        .any(|a| {
            a.starts_with("--extcap-")
                || a == "--capture"
                || a == "--fifo"
                || a.starts_with("--fifo=")
        })
}

/// What an extcap call leads to.
pub enum Outcome {
    /// Answered (interfaces, DLTs, config, filter check).
    Done(ExitCode),
    /// `--capture`: the pod run to execute, its output (stdout) already the fifo.
    Capture(Box<Run>),
}

/// Answers one extcap call.
pub fn run(args: &[OsString]) -> Result<Outcome, StartError> {
    let cli = ExtcapCli::try_parse_from(args).map_err(|e| {
        StartError::Usage(format!(
            "extcap call not understood ({}); this podcap-merge answers Wireshark's extcap \
             protocol as Wireshark 4.0 speaks it",
            e.to_string().lines().next().unwrap_or("?")
        ))
    })?;
    if cli.extcap_interfaces {
        print!("{}", interfaces());
        return Ok(Outcome::Done(ExitCode::SUCCESS));
    }
    let iface = cli.extcap_interface.as_deref().unwrap_or(INTERFACE);
    if iface != INTERFACE {
        return Err(StartError::Usage(format!(
            "unknown extcap interface {iface:?}: this program provides {INTERFACE:?}"
        )));
    }
    if cli.extcap_dlts {
        print!("{}", dlts());
        return Ok(Outcome::Done(ExitCode::SUCCESS));
    }
    if cli.extcap_config {
        let s = &cli.settings;
        print!(
            "{}",
            match cli.extcap_reload_option.as_deref() {
                Some("namespace") => namespace_values(&namespaces(s), 2),
                Some(_) => String::new(),
                None => config(s, &contexts(s.kubeconfig.as_deref()), &namespaces(s)),
            }
        );
        return Ok(Outcome::Done(ExitCode::SUCCESS));
    }
    if cli.capture {
        let Some(fifo) = cli.fifo.as_deref() else {
            return Err(StartError::Usage("--capture needs --fifo PATH".into()));
        };
        let filter = joined_filter(
            cli.settings.filter.as_deref(),
            cli.extcap_capture_filter.as_deref(),
        );
        let argv = capture_argv(&cli.settings, filter.as_deref());
        // the fifo becomes our standard output before anything can fail, so that Wireshark,
        // which waits on it, sees its end (and our message on stderr) whatever happens next
        become_stdout(fifo)?;
        return flags::parse_from(argv).map(|r| Outcome::Capture(Box::new(r)));
    }
    if let Some(f) = cli.extcap_capture_filter.as_deref() {
        use crate::k8s::precheck::{check_filter, FilterCheck};
        let interface = cli
            .settings
            .interface
            .as_deref()
            .filter(|i| !i.is_empty())
            .unwrap_or("any");
        return Ok(Outcome::Done(
            match check_filter(interface, &[f.to_string()]) {
                FilterCheck::Accepted => ExitCode::SUCCESS,
                // Wireshark shows the first line beside the filter field
                FilterCheck::Refused(m) => {
                    println!("{m}");
                    ExitCode::SUCCESS
                }
                // Wireshark then shows the filter as neither valid nor invalid
                FilterCheck::Unchecked(m) => {
                    eprintln!("{m}");
                    ExitCode::from(1)
                }
            },
        ));
    }
    Err(StartError::Usage(
        "an extcap call needs --extcap-interfaces, --extcap-dlts, --extcap-config, \
         --extcap-capture-filter or --capture"
            .into(),
    ))
}

fn interfaces() -> String {
    format!(
        "extcap {{version={}}}{{display=podcap-merge: capture Kubernetes pods}}\n\
         interface {{value={INTERFACE}}}{{display=Kubernetes pods (podcap-merge)}}\n",
        env!("CARGO_PKG_VERSION")
    )
}

fn dlts() -> String {
    format!(
        "dlt {{number={DLT_LINUX_SLL2}}}{{name=LINUX_SLL2}}{{display=Linux cooked v2 \
         (each pod's own link type is in the stream)}}\n"
    )
}

/// Text inside an extcap sentence's braces: `{` and `}` would end the field, so they are
/// replaced (Wireshark has no escape for them).
fn field(s: &str) -> String {
    s.replace('{', "(").replace('}', ")").replace('\n', " ")
}

/// The contexts of the kubeconfig and the current one.
pub struct Contexts {
    pub names: Vec<String>,
    pub current: Option<String>,
}

fn contexts(kubeconfig: Option<&Path>) -> Contexts {
    let kc = match kubeconfig {
        Some(p) => kube::config::Kubeconfig::read_from(p),
        None => kube::config::Kubeconfig::read(),
    };
    match kc {
        Ok(kc) => Contexts {
            names: kc.contexts.iter().map(|c| c.name.clone()).collect(),
            current: kc.current_context,
        },
        Err(_) => Contexts {
            names: Vec::new(),
            current: None,
        },
    }
}

/// The namespaces of the cluster, or why there is no list; and the context's own namespace.
pub struct Namespaces {
    pub listed: Result<Vec<String>, String>,
    pub default: String,
}

fn namespaces(s: &Settings) -> Namespaces {
    let kubeconfig = s.kubeconfig.clone().filter(|p| !p.as_os_str().is_empty());
    let context = s.context.clone().filter(|c| !c.is_empty());
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return Namespaces {
                listed: Err(e.to_string()),
                default: "default".into(),
            }
        }
    };
    rt.block_on(async move {
        let conn = match tokio::time::timeout(
            LIST_BOUND,
            crate::k8s::client::connect(kubeconfig.as_deref(), context.as_deref()),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Namespaces {
                    listed: Err(e.to_string()),
                    default: "default".into(),
                }
            }
            Err(_) => {
                return Namespaces {
                    listed: Err("no answer within 3 s".into()),
                    default: "default".into(),
                }
            }
        };
        let api: kube::Api<k8s_openapi::api::core::v1::Namespace> =
            kube::Api::all(conn.client.clone());
        let listed = match tokio::time::timeout(
            LIST_BOUND,
            api.list_metadata(&kube::api::ListParams::default()),
        )
        .await
        {
            Ok(Ok(list)) => Ok(list
                .items
                .into_iter()
                .filter_map(|n| n.metadata.name)
                .collect()),
            Ok(Err(e)) => Err(crate::k8s::errors::status(&e)
                .map(|s| s.message.clone())
                .unwrap_or_else(|| e.to_string())),
            Err(_) => Err(format!("no answer within {} s", LIST_BOUND.as_secs())),
        };
        Namespaces {
            listed,
            default: conn.default_namespace,
        }
    })
}

/// A message cut to what fits a selector's line.
fn short(why: &str) -> String {
    const MAX: usize = 120;
    match why.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &why[..at]),
        None => why.to_string(),
    }
}

/// The namespace selector's values (argument `arg`): the cluster's namespaces, the context's
/// own selected by default; when the cluster could not be asked, that one alone and why.
fn namespace_values(ns: &Namespaces, arg: usize) -> String {
    let mut out = String::new();
    let mut names = ns.listed.clone().unwrap_or_default();
    if !names.contains(&ns.default) {
        names.insert(0, ns.default.clone());
    }
    for n in &names {
        let display = match (&ns.listed, n == &ns.default) {
            (Err(why), true) => {
                format!("{n} (the namespace list is unavailable: {})", short(why))
            }
            _ => n.clone(),
        };
        let default = if n == &ns.default {
            "{default=true}"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "value {{arg={arg}}}{{value={}}}{{display={}}}{default}",
            field(n),
            field(&display)
        );
    }
    let _ = writeln!(
        out,
        "value {{arg={arg}}}{{value={EVERY_NAMESPACE}}}{{display=(every namespace)}}"
    );
    out
}

fn config(s: &Settings, ctx: &Contexts, ns: &Namespaces) -> String {
    let mut out = String::new();
    let mut arg = |line: String| {
        out.push_str(&line);
        out.push('\n');
    };
    arg(
        "arg {number=0}{call=--kubeconfig}{display=Kubeconfig}{type=fileselect}\
         {tooltip=The kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then the \
         in-cluster service account)}{group=Cluster}"
            .into(),
    );
    arg(
        "arg {number=1}{call=--context}{display=Context}{type=selector}\
         {tooltip=The kubeconfig context (default: its current context)}{group=Cluster}"
            .into(),
    );
    let current = s
        .context
        .clone()
        .filter(|c| !c.is_empty())
        .or(ctx.current.clone());
    for c in &ctx.names {
        let default = if Some(c) == current.as_ref() {
            "{default=true}"
        } else {
            ""
        };
        arg(format!(
            "value {{arg=1}}{{value={}}}{{display={}}}{default}",
            field(c),
            field(c)
        ));
    }
    arg(
        "arg {number=2}{call=--namespace}{display=Namespace}{type=selector}{reload=true}\
         {placeholder=Reload the namespaces of the context}\
         {tooltip=The namespace whose pods are captured}{group=Pods}"
            .into(),
    );
    out.push_str(&namespace_values(ns, 2));
    let mut arg = |line: &str| {
        out.push_str(line);
        out.push('\n');
    };
    arg(
        "arg {number=3}{call=--selector}{display=Label selector}{type=string}\
         {tooltip=As kubectl -l: app=mando, tier in (a,b), !canary. With no selector and no pod \
         names every pod of the namespace is captured}{group=Pods}",
    );
    arg(
        "arg {number=4}{call=--pods}{display=Pod names}{type=string}\
         {tooltip=Pods by name, or one workload (deploy/NAME, sts/NAME, ds/NAME, svc/NAME), \
         separated by spaces}{group=Pods}",
    );
    arg(
        "arg {number=5}{call=--filter}{display=Capture filter}{type=string}\
         {tooltip=tcpdump's filter expression, run in each pod; the capture filter field of \
         Wireshark is added to it with and}{group=Capture}",
    );
    arg(
        "arg {number=6}{call=--interface}{display=Interface in each pod}{type=string}\
         {default=any}{tooltip=As tcpdump -i}{group=Capture}",
    );
    arg(&format!(
        "arg {{number=7}}{{call=--image}}{{display=Capture image}}{{type=string}}\
         {{default={}}}{{tooltip=Image of the ephemeral capture container (needs sh, tcpdump, \
         sleep, kill and cat)}}{{group=Capture}}",
        crate::k8s::DEFAULT_IMAGE
    ));
    arg(&format!(
        "arg {{number=8}}{{call=--reorder-window}}{{display=Reorder window}}{{type=string}}\
         {{default={}}}{{validation=^[0-9.]+(ns|us|ms|s|m|h)?$}}{{tooltip=The longest a \
         packet is held for pods that may still deliver older ones; each pod is waited for \
         only as long as its own delivery lag needs (2s, 500ms)}}\
         {{group=Capture}}",
        crate::flags::duration::Time(crate::merge::DEFAULT_WINDOW)
    ));
    arg(
        "arg {number=9}{call=--dedup}{display=One copy per packet}{type=boolflag}\
         {default=false}{tooltip=Keep one copy of a packet two captured pods both saw (the \
         sender's), so Wireshark's TCP analysis flags no false retransmissions}{group=Capture}",
    );
    arg(
        "arg {number=10}{call=--correct-skew}{display=Correct clocks between nodes}\
         {type=boolflag}{default=false}{tooltip=Shift each node's timestamps by its clock's \
         offset, measured from packets sent both ways between pods (the capture starts up to 5 s \
         later)}{group=Capture}",
    );
    out
}

/// The filter of the dialog and the one of Wireshark's capture filter field, both applied.
fn joined_filter(dialog: Option<&str>, field: Option<&str>) -> Option<String> {
    let d = dialog.map(str::trim).filter(|f| !f.is_empty());
    let f = field.map(str::trim).filter(|f| !f.is_empty());
    match (d, f) {
        (Some(a), Some(b)) => Some(format!("({a}) and ({b})")),
        (a, b) => a.or(b).map(str::to_string),
    }
}

/// The ordinary command line for the capture: the same checks and the same run as from a
/// shell, quiet (Wireshark treats anything on stderr as an error), into standard output.
pub fn capture_argv(s: &Settings, filter: Option<&str>) -> Vec<String> {
    let given = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
    let mut a: Vec<String> = vec![flags::NAME.into(), "-q".into(), "-w".into(), "-".into()];
    if let Some(k) = s.kubeconfig.as_ref().filter(|p| !p.as_os_str().is_empty()) {
        a.extend(["--kubeconfig".into(), k.to_string_lossy().into_owned()]);
    }
    if let Some(c) = given(&s.context) {
        a.extend(["--context".into(), c]);
    }
    match given(&s.namespace).as_deref() {
        Some(EVERY_NAMESPACE) => a.push("-A".into()),
        Some(n) => a.extend(["-n".into(), n.into()]),
        None => {}
    }
    let selector = given(&s.selector);
    let pods: Vec<String> = given(&s.pods)
        .map(|p| {
            p.split(|c: char| c.is_whitespace() || c == ',')
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if let Some(l) = selector.clone() {
        a.extend(["-l".into(), l]);
    }
    if selector.is_none() && pods.is_empty() {
        a.push("--all".into());
    }
    if let Some(i) = given(&s.interface) {
        a.extend(["-i".into(), i]);
    }
    if let Some(i) = given(&s.image) {
        a.extend(["--image".into(), i]);
    }
    if let Some(w) = given(&s.reorder_window) {
        a.extend(["--reorder-window".into(), w]);
    }
    if s.dedup {
        a.push("--dedup".into());
    }
    if s.correct_skew {
        a.push("--correct-skew".into());
    }
    if let Some(f) = filter {
        a.extend(["-f".into(), f.into()]);
    }
    // pod names last, as positionals (a name can never be taken for a flag: kubectl's names
    // start with a letter or digit)
    a.extend(pods);
    a
}

/// Opens the fifo Wireshark reads (waiting until it does) and makes it our standard output.
fn become_stdout(fifo: &Path) -> Result<(), StartError> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(fifo)
        .map_err(|e| StartError::Usage(format!("cannot open the fifo {}: {e}", fifo.display())))?;
    // SAFETY: dup2 of a descriptor we own onto standard output; `f` is closed after.
    if unsafe { libc::dup2(f.as_raw_fd(), 1) } < 0 {
        return Err(StartError::Io(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn extcap_calls_are_told_from_ordinary_ones() {
        assert!(invoked(&os(&[
            "x",
            "--extcap-interfaces",
            "--extcap-version=4.0"
        ])));
        assert!(invoked(&os(&["x", "--capture", "--fifo", "/tmp/f"])));
        assert!(!invoked(&os(&["x", "-l", "app=x", "--", "--capture"])));
        assert!(!invoked(&os(&["x", "-n", "shop", "--dry-run"])));
    }

    #[test]
    fn the_dialog_becomes_the_ordinary_command_line() {
        let s = Settings {
            namespace: Some("shop".into()),
            selector: Some(String::new()),
            pods: Some("  ".into()),
            interface: Some("any".into()),
            reorder_window: Some("300ms".into()),
            dedup: true,
            correct_skew: true,
            ..Settings::default()
        };
        let a = capture_argv(&s, Some("tcp port 80"));
        assert_eq!(
            a,
            [
                "podcap-merge",
                "-q",
                "-w",
                "-",
                "-n",
                "shop",
                "--all",
                "-i",
                "any",
                "--reorder-window",
                "300ms",
                "--dedup",
                "--correct-skew",
                "-f",
                "tcp port 80"
            ]
        );
        let s = Settings {
            context: Some("kind-dev".into()),
            namespace: Some("*".into()),
            selector: Some("app=mando".into()),
            pods: Some("mando-1, mando-2".into()),
            ..Settings::default()
        };
        let a = capture_argv(&s, None);
        assert_eq!(
            a,
            [
                "podcap-merge",
                "-q",
                "-w",
                "-",
                "--context",
                "kind-dev",
                "-A",
                "-l",
                "app=mando",
                "mando-1",
                "mando-2"
            ]
        );
    }

    #[test]
    fn both_filters_apply() {
        assert_eq!(
            joined_filter(Some("tcp"), Some("port 80")).as_deref(),
            Some("(tcp) and (port 80)")
        );
        assert_eq!(
            joined_filter(Some(" "), Some("udp")).as_deref(),
            Some("udp")
        );
        assert_eq!(joined_filter(None, None), None);
    }

    #[test]
    fn the_namespace_list_says_why_it_is_missing() {
        let ns = Namespaces {
            listed: Err("connection refused".into()),
            default: "shop".into(),
        };
        let v = namespace_values(&ns, 2);
        assert!(v.starts_with("value {arg=2}{value=shop}{display=shop (the namespace list is unavailable: connection refused)}{default=true}\n"), "{v}");
        let ns = Namespaces {
            listed: Ok(vec!["default".into(), "shop".into()]),
            default: "shop".into(),
        };
        assert_eq!(
            namespace_values(&ns, 2),
            "value {arg=2}{value=default}{display=default}\n\
             value {arg=2}{value=shop}{display=shop}{default=true}\n\
             value {arg=2}{value=*}{display=(every namespace)}\n"
        );
    }
}

//! The command line as clap sees it: flags grouped under the headings `--help` shows (pods
//! first, then how each pod is captured, then the merge, the output and when to stop, as
//! dumpcap groups its own), with no validation beyond a value's own type. Everything that
//! relates two flags is checked in [`super::run`].
//!
//! Every help text is one paragraph, so `-h` and `--help` print the same page.

use super::duration::Time;
use crate::k8s::DEFAULT_IMAGE;
use crate::live::CommandSpec;
use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand};
use std::path::PathBuf;

/// What the command line is made of before any check. Build the clap command with
/// [`command`], which adds the usage lines and the examples for the name the program was
/// called by.
#[derive(Parser, Debug)]
#[command(
    name = "podcap-merge",
    version,
    about = ABOUT,
    long_about = None,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true,
    disable_help_flag = true,
    disable_version_flag = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub live: LiveArgs,
    /// Print this help.
    #[arg(short = 'h', long = "help", action = ArgAction::Help, help_heading = "Other", global = true)]
    pub help: Option<bool>,
    /// Print the version.
    #[arg(short = 'V', long = "version", action = ArgAction::Version, help_heading = "Other")]
    pub version: Option<bool>,
}

const ABOUT: &str = "Capture every Kubernetes pod a selector matches (an ephemeral container \
    running tcpdump in each) and merge the captures by timestamp into one pcapng stream, one \
    named interface per pod. Local capture commands (--cmd) and capture files (merge) go \
    through the same merge.";

/// The clap command for the name the program was called by: `podcap-merge`, or
/// `kubectl podcap` as a kubectl plugin.
pub fn command(name: &str) -> clap::Command {
    Cli::command()
        .bin_name(name)
        .override_usage(usage(name))
        .after_help(examples(name))
}

fn usage(name: &str) -> String {
    format!(
        "{name} [POD|KIND/NAME]... [-n NS | -A] [-l SELECTOR] [OPTIONS] [-- FILTER...]\n       \
         {name} --cmd NAME=COMMAND... [--stdin[=NAME]] [OPTIONS]\n       \
         {name} merge [OPTIONS] FILE...\n       \
         {name} <COMMAND>"
    )
}

/// The Examples section, as `kubectl debug --help` has one: a comment line, the command.
pub fn examples(name: &str) -> String {
    let mut s = String::from("Examples:\n");
    for (i, (what, cmd)) in example_list(name).iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        s.push_str(&format!("  # {what}\n  {cmd}\n"));
    }
    s
}

/// The examples: what each does, and the command.
pub fn example_list(name: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "Capture every pod labelled app=mando in namespace shop, live in Wireshark",
            format!("{name} -n shop -l app=mando | wireshark -k -i -"),
        ),
        (
            "The pods of a deployment, HTTP only, for 60 seconds, into a file",
            format!("{name} -n shop deploy/mando --duration 60 -w mando.pcapng -- tcp port 80"),
        ),
        (
            "Two pods by name into a ring of 10 files of 100 MB",
            format!("{name} -n shop mando-1 mando-2 -w cap.pcapng -b filesize:100000 -b files:10"),
        ),
        (
            "Which pods would be captured, and how (nothing is changed)",
            format!("{name} -n shop -l app=mando --dry-run"),
        ),
        (
            "Local captures, merged live",
            format!(
                "{name} --cmd web='ip netns exec web tcpdump -U -w -' \
                 --cmd db='ssh db1 tcpdump -U -w -' | wireshark -k -i -"
            ),
        ),
        (
            "Merge capture files by timestamp",
            format!("{name} merge a.pcap b.pcapng -w all.pcapng"),
        ),
        (
            "Try it all against a local test cluster",
            format!("{name} demo"),
        ),
        (
            "Show \"Kubernetes pods\" among Wireshark's interfaces",
            format!("{name} extcap install"),
        ),
        (
            "Shell completions, the man page and the Wireshark link under a prefix",
            format!("{name} install-extras --prefix ~/.local"),
        ),
    ]
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Merge capture files (pcap or pcapng, any byte order) by timestamp into one pcapng, each input interface its own named interface; a bad input is reported and skipped from its fault on (exit status 1).
    Merge(MergeArgs),
    /// Run the whole pipeline against a local test cluster started in-process: pods with real traffic, ephemeral containers, exec streams, merged into one file that tshark opens.
    Demo(DemoArgs),
    /// Print the completion script for a shell (bash, zsh, fish, powershell) on stdout.
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout: `podcap-merge man | man -l -`.
    Man,
    /// Wireshark's external capture interface: `extcap install` lists "Kubernetes pods" among Wireshark's and tshark's interfaces.
    Extcap(ExtcapArgs),
    /// Write the shell completions, the man page, the Wireshark extcap link and the kubectl plugin link under a prefix (e.g. ~/.local or /usr/local).
    InstallExtras(InstallExtrasArgs),
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Output file.
    #[arg(
        short = 'w',
        long = "write",
        value_name = "OUT",
        default_value = "demo.pcapng"
    )]
    pub write: PathBuf,
    /// How many pods the test cluster runs.
    #[arg(long = "pods", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub pods: u64,
    /// How long to capture (5, 5s, 1500ms, 1m).
    #[arg(long = "duration", value_name = "TIME", default_value_t = Time::secs(5))]
    pub duration: Time,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ExtcapArgs {
    #[command(subcommand)]
    pub action: ExtcapAction,
}

#[derive(Subcommand, Debug)]
pub enum ExtcapAction {
    /// Link this program into Wireshark's extcap directory and say where.
    Install(ExtcapDir),
    /// Remove the link `extcap install` placed.
    Uninstall(ExtcapDir),
}

#[derive(Args, Debug)]
pub struct ExtcapDir {
    /// The extcap directory (default: the "Extcap path" that `tshark -G folders` names).
    #[arg(long = "dir", value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct InstallExtrasArgs {
    /// Where to install: PREFIX/share/bash-completion, PREFIX/share/zsh, PREFIX/share/fish, PREFIX/share/man/man1, PREFIX/lib/…/wireshark/extcap, PREFIX/bin/kubectl-podcap.
    #[arg(long = "prefix", value_name = "DIR")]
    pub prefix: PathBuf,
}

/// Where the output goes (dumpcap's vocabulary), shared by live capture and merge.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Output file; `-` (the default) writes to standard output. A name ending in .gz is gzip-compressed.
    #[arg(short = 'w', long = "write", value_name = "OUT", default_value = "-")]
    pub write: PathBuf,
    /// Ring buffer, as dumpcap: filesize:KB, duration:TIME, interval:SEC, packets:N, files:N; files are named PREFIX_00001_YYYYmmddHHMMSS.pcapng after -w.
    #[arg(short = 'b', long = "ring-buffer", value_name = "KEY:VALUE")]
    pub ring: Vec<String>,
    /// Compress output files (gzip; tshark and Wireshark read .pcapng.gz directly).
    #[arg(long = "compress", value_name = "gzip", hide_possible_values = true, value_parser = ["gzip"])]
    pub compress: Option<String>,
    /// No progress rows and no summary (errors are still printed).
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    #[command(flatten)]
    pub stop: StopArgs,
}

/// When to stop (dumpcap's vocabulary).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Stop conditions")]
pub struct StopArgs {
    /// Stop after writing this many packets.
    #[arg(short = 'c', long = "count", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Stop after this long (2, 90s, 1.5m, 1h).
    #[arg(long = "duration", value_name = "TIME")]
    pub duration: Option<Time>,
    /// Autostop condition, as dumpcap: duration:TIME or packets:N.
    #[arg(short = 'a', long = "autostop", value_name = "KEY:VALUE")]
    pub autostop: Vec<String>,
}

/// Packets captured by two sources (sender's and receiver's pod).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Copies across pods")]
pub struct LinkArgs {
    /// Keep one copy of each packet captured by two sources: the sender's (so its time is the
    /// sending time); drop the receiver's. Without it both copies are kept and share a packet
    /// id (tshark: frame.packet_id).
    #[arg(long = "dedup", conflicts_with = "no_link")]
    pub dedup: bool,
    /// Write the pod-to-pod one-way latency (p50/p99 per pod pair and per Service → backend
    /// mapping) to FILE: CSV or JSON, by its extension (.csv, .json).
    #[arg(
        long = "latency-report",
        value_name = "FILE",
        conflicts_with = "no_link"
    )]
    pub latency_report: Option<PathBuf>,
    /// Do not recognise copies across sources: no packet ids, no direction flags, no latency.
    #[arg(long = "no-link")]
    pub no_link: bool,
    /// Shift each node's timestamps by its clock's offset from a reference node (the lowest
    /// named one with pairs to the others), estimated from the copies of packets sent between
    /// them (live: the output waits up to 5 s for a confident estimate; files: a first pass
    /// over them). Without it the offsets are only reported.
    #[arg(long = "correct-skew", conflicts_with = "no_link")]
    pub correct_skew: bool,
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub link: LinkArgs,
    /// Interface name prefix for each input, in order (default: the file stem).
    #[arg(long = "name", value_name = "NAME", help_heading = "Output")]
    pub names: Vec<String>,
    /// Capture files to merge; `-` reads standard input.
    #[arg(
        value_name = "FILE",
        required = true,
        help_heading = "Inputs",
        display_order = 0
    )]
    pub files: Vec<PathBuf>,
}

/// Which pods (kubectl's vocabulary).
#[derive(Args, Debug)]
#[command(next_help_heading = "Selection")]
pub struct PodArgs {
    /// Pods to capture: NAME or pod/NAME, or a workload whose selector names them: deploy/NAME, sts/NAME, ds/NAME, svc/NAME.
    #[arg(value_name = "POD|KIND/NAME", display_order = 0)]
    pub targets: Vec<String>,
    /// Namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long = "namespace", value_name = "NS")]
    pub namespace: Option<String>,
    /// Pods of every namespace.
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
    /// Label selector, as kubectl (app=mando, tier in (a,b), !canary).
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Every pod of the namespace (of every namespace with -A).
    #[arg(long = "all")]
    pub all: bool,
    /// Field selector, as kubectl (spec.nodeName=node-1).
    #[arg(long = "field-selector", value_name = "FIELDS")]
    pub field_selector: Option<String>,
    /// kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster).
    #[arg(long = "kubeconfig", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context.
    #[arg(long = "context", value_name = "CONTEXT")]
    pub context: Option<String>,
    /// Refuse to capture more pods than this (a safety cap).
    #[arg(long = "max-pods", value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10000))]
    pub max_pods: u64,
    /// List what would be captured and how, change nothing (kubectl's --dry-run=client; --dry-run=none runs for real).
    #[arg(long = "dry-run", value_name = "client|none", num_args = 0..=1, require_equals = true,
          default_missing_value = "client", hide_possible_values = true,
          value_parser = PossibleValuesParser::new([
              PossibleValue::new("client"),
              PossibleValue::new("none"),
              // refused with a message (kubectl's server-side dry run is not ours)
              PossibleValue::new("server").hide(true),
          ]))]
    pub dry_run: Option<String>,
    #[command(flatten)]
    pub container: ContainerArgs,
    #[command(flatten)]
    pub capture: CaptureArgs,
}

/// The capture container added to each pod (kubectl debug's vocabulary).
#[derive(Args, Debug)]
#[command(next_help_heading = "Capture container")]
pub struct ContainerArgs {
    /// Image of the capture container (needs sh, tcpdump, sleep, kill and cat).
    #[arg(long = "image", value_name = "IMAGE", default_value = DEFAULT_IMAGE)]
    pub image: String,
    /// As kubectl debug: Always, IfNotPresent or Never.
    #[arg(long = "image-pull-policy", value_name = "POLICY", hide_possible_values = true, value_parser = ["Always", "IfNotPresent", "Never"])]
    pub image_pull_policy: Option<String>,
    /// Container whose processes the capture container joins (default: the pod's first).
    #[arg(long = "target", value_name = "CONTAINER")]
    pub target: Option<String>,
    /// Capabilities of the capture container: auto (NET_RAW, without it if Pod Security baseline refuses), netraw, netadmin, baseline (none added).
    #[arg(long = "profile", value_name = "PROFILE", hide_possible_values = true, default_value = "auto", value_parser = ["auto", "netraw", "netadmin", "baseline"])]
    pub profile: String,
    /// How the capture streams back: auto (exec; attach if exec is forbidden), exec, attach.
    #[arg(long = "via", value_name = "HOW", hide_possible_values = true, default_value = "auto", value_parser = ["auto", "exec", "attach"])]
    pub via: String,
    /// No capture process in a pod outlives this, whatever happens to us (10s to 10 years).
    #[arg(long = "max-duration", value_name = "TIME", default_value_t = Time::secs(24 * 3600))]
    pub max_duration: Time,
    /// How long a pod may take to start its capture container.
    #[arg(long = "start-timeout", value_name = "TIME", default_value_t = Time::secs(120))]
    pub start_timeout: Time,
}

/// What tcpdump captures in each pod (tcpdump's and dumpcap's vocabulary).
#[derive(Args, Debug)]
#[command(next_help_heading = "Capture")]
pub struct CaptureArgs {
    /// Interface to capture in each pod, as tcpdump -i.
    #[arg(
        short = 'i',
        long = "interface",
        value_name = "IFACE",
        default_value = "any"
    )]
    pub interface: String,
    /// Bytes kept of each packet, as tcpdump -s (0: the whole packet, the default).
    #[arg(short = 's', long = "snaplen", value_name = "BYTES", value_parser = clap::value_parser!(u32).range(0..=262144))]
    pub snaplen: Option<u32>,
    /// The capture filter, tcpdump's expression, after `--` (e.g. -- tcp port 80).
    #[arg(last = true, value_name = "FILTER", display_order = 100)]
    pub filter: Vec<String>,
    /// The capture filter as one argument, as dumpcap -f (the same as the words after --).
    #[arg(short = 'f', long = "filter", value_name = "FILTER")]
    pub filter_option: Option<String>,
    /// No promiscuous mode, as tcpdump -p (the default).
    #[arg(
        short = 'p',
        long = "no-promiscuous-mode",
        conflicts_with = "promiscuous"
    )]
    pub no_promiscuous: bool,
    /// Promiscuous mode (adds NET_ADMIN to the capture container).
    #[arg(long = "promiscuous")]
    pub promiscuous: bool,
}

/// Local sources, and the live merge.
#[derive(Args, Debug)]
pub struct LiveArgs {
    #[command(flatten)]
    pub pods: PodArgs,
    /// A local command whose stdout is a pcap or pcapng stream (repeatable), e.g. web='ip netns exec web tcpdump -U --immediate-mode -i any -w -'.
    #[arg(long = "cmd", value_name = "NAME=COMMAND", value_parser = super::run::command_spec, help_heading = "Local sources (instead of pods)")]
    pub commands: Vec<CommandSpec>,
    /// Also read a capture stream from standard input, under this name (default "stdin").
    #[arg(long = "stdin", value_name = "NAME", num_args = 0..=1, default_missing_value = "stdin", help_heading = "Local sources (instead of pods)")]
    pub stdin: Option<String>,
    /// The longest a packet is held for sources that may still deliver older ones (2s, 500ms); each source is waited for only as long as its measured delivery lag needs. Packets arriving later still are written and counted as late.
    #[arg(long = "reorder-window", value_name = "TIME", default_value_t = Time(crate::merge::DEFAULT_WINDOW), help_heading = "Live merge")]
    pub reorder_window: Time,
    /// Bytes each source may have read ahead of the output (backpressure bound), in KiB.
    #[arg(long = "source-buffer", value_name = "KiB", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(64..=1024 * 1024), help_heading = "Live merge")]
    pub source_buffer: u64,
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub link: LinkArgs,
}

impl PodArgs {
    /// Does the command line ask for pods at all?
    pub fn wanted(&self) -> bool {
        !self.targets.is_empty()
            || self.selector.is_some()
            || self.all
            || self.field_selector.is_some()
            || self.dry_run.as_deref() == Some("client")
            || !self.capture.filter.is_empty()
            || self.capture.filter_option.is_some()
    }
}

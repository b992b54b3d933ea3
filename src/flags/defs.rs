//! The command line as clap sees it: flags grouped by what they are about (help headings),
//! with no validation beyond a value's own type. Everything that relates two flags is checked
//! in [`super::run`].

use super::duration::Time;
use crate::k8s::DEFAULT_IMAGE;
use crate::live::CommandSpec;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Capture traffic from many sources and merge it by timestamp into one pcapng stream in which
/// every source interface is its own named interface.
///
/// Pods: `podcap-merge -n shop -l app=mando | wireshark -k -i -`
/// Commands: `podcap-merge --cmd web='ip netns exec web tcpdump -U -w -' --cmd db='…' | wireshark -k -i -`
/// Files: `podcap-merge merge a.pcap b.pcapng -w all.pcapng`
#[derive(Parser, Debug)]
#[command(
    name = "podcap-merge",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub live: LiveArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Merge capture files (pcap or pcapng, any byte order) by timestamp into one pcapng.
    ///
    /// Every input interface becomes its own output interface, named after the file stem and
    /// its own interface name (a/eth0). Bad inputs are reported and skipped from the point of
    /// the fault; the output stays valid and the exit status is 1.
    Merge(MergeArgs),
    /// Run the whole pipeline against a local test cluster started in-process: pods with real
    /// traffic, ephemeral containers, exec streams, merged into one file that tshark opens.
    Demo(DemoArgs),
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

/// Where and how to write, shared by live capture and merge (dumpcap's vocabulary).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Output file; `-` (the default) writes to standard output. A name ending in .gz is
    /// gzip-compressed.
    #[arg(short = 'w', long = "write", value_name = "OUT", default_value = "-")]
    pub write: PathBuf,
    /// Ring buffer, as dumpcap: filesize:KB, duration:TIME, interval:SEC, packets:N, files:N.
    /// Files are named PREFIX_00001_YYYYmmddHHMMSS.pcapng after -w.
    #[arg(short = 'b', long = "ring-buffer", value_name = "KEY:VALUE")]
    pub ring: Vec<String>,
    /// Compress output files (gzip; tshark and Wireshark read .pcapng.gz directly).
    #[arg(long = "compress", value_name = "gzip", value_parser = ["gzip"])]
    pub compress: Option<String>,
    /// Stop after writing this many packets.
    #[arg(short = 'c', long = "count", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Stop after this long (2, 90s, 1.5m, 1h; also -a duration:TIME, as dumpcap).
    #[arg(long = "duration", value_name = "TIME")]
    pub duration: Option<Time>,
    /// Autostop condition, as dumpcap: duration:TIME or packets:N.
    #[arg(short = 'a', long = "autostop", value_name = "KEY:VALUE")]
    pub autostop: Vec<String>,
    /// No progress rows and no summary (errors are still printed).
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
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
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub link: LinkArgs,
    /// Interface name prefix for each input, in order (default: the file stem).
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// Capture files to merge; `-` reads standard input.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// Which pods (kubectl's vocabulary).
#[derive(Args, Debug)]
#[command(next_help_heading = "Pods (as kubectl selects them)")]
pub struct PodArgs {
    /// Pods to capture: NAME or pod/NAME, or a workload whose selector names them:
    /// deploy/NAME, sts/NAME, ds/NAME, svc/NAME. A capture filter (BPF) follows `--`.
    #[arg(value_name = "POD|KIND/NAME")]
    pub targets: Vec<String>,
    /// The capture filter, tcpdump's expression, after `--` (e.g. -- tcp port 80).
    #[arg(last = true, value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long = "namespace")]
    pub namespace: Option<String>,
    /// Pods of every namespace.
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
    /// Label selector, as kubectl (app=mando, tier in (a,b), !canary).
    #[arg(short = 'l', long = "selector")]
    pub selector: Option<String>,
    /// Field selector, as kubectl (spec.nodeName=node-1).
    #[arg(long = "field-selector")]
    pub field_selector: Option<String>,
    /// kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster).
    #[arg(long = "kubeconfig", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context.
    #[arg(long = "context")]
    pub context: Option<String>,
    /// Refuse to capture more pods than this (a safety cap).
    #[arg(long = "max-pods", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10000))]
    pub max_pods: u64,
    /// List what would be captured and how, change nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    #[command(flatten)]
    pub capture: CaptureArgs,
}

/// How each pod is captured (tcpdump's and kubectl debug's vocabulary).
#[derive(Args, Debug)]
#[command(next_help_heading = "Capture in each pod")]
pub struct CaptureArgs {
    /// Image of the capture container (needs sh and tcpdump).
    #[arg(long = "image", default_value = DEFAULT_IMAGE)]
    pub image: String,
    /// As kubectl debug: Always, IfNotPresent or Never.
    #[arg(long = "image-pull-policy", value_parser = ["Always", "IfNotPresent", "Never"])]
    pub image_pull_policy: Option<String>,
    /// Container whose processes the capture container joins (default: the pod's first).
    #[arg(long = "target", value_name = "CONTAINER")]
    pub target: Option<String>,
    /// Interface to capture in each pod, as tcpdump -i.
    #[arg(short = 'i', long = "interface", default_value = "any")]
    pub interface: String,
    /// Bytes kept of each packet, as tcpdump -s.
    #[arg(short = 's', long = "snaplen", value_parser = clap::value_parser!(u32).range(1..=262144))]
    pub snaplen: Option<u32>,
    /// Promiscuous mode (adds NET_ADMIN to the capture container).
    #[arg(long = "promiscuous")]
    pub promiscuous: bool,
    /// Capabilities of the capture container: auto (NET_RAW, without it if Pod Security
    /// baseline refuses), netraw, netadmin, baseline (none added).
    #[arg(long = "profile", default_value = "auto", value_parser = ["auto", "netraw", "netadmin", "baseline"])]
    pub profile: String,
    /// How the capture streams back: auto (exec; attach if exec is forbidden), exec, attach.
    #[arg(long = "via", default_value = "auto", value_parser = ["auto", "exec", "attach"])]
    pub via: String,
    /// No capture process in a pod outlives this, whatever happens to us (10s to 10 years).
    #[arg(long = "max-duration", value_name = "TIME", default_value_t = Time::secs(24 * 3600))]
    pub max_duration: Time,
    /// How long a pod may take to start its capture container.
    #[arg(long = "start-timeout", value_name = "TIME", default_value_t = Time::secs(120))]
    pub start_timeout: Time,
}

/// Local sources, and the live merge.
#[derive(Args, Debug)]
pub struct LiveArgs {
    #[command(flatten)]
    pub pods: PodArgs,
    /// A local command whose stdout is a pcap or pcapng stream, e.g.
    /// web='ip netns exec web tcpdump -U --immediate-mode -i any -w -' (repeatable).
    #[arg(long = "cmd", value_name = "NAME=COMMAND", value_parser = super::run::command_spec, help_heading = "Local sources")]
    pub commands: Vec<CommandSpec>,
    /// Also read a capture stream from standard input, under this name (default "stdin").
    #[arg(long = "stdin", value_name = "NAME", num_args = 0..=1, default_missing_value = "stdin", help_heading = "Local sources")]
    pub stdin: Option<String>,
    /// How long to wait for a quiet source before writing later packets of the others
    /// (300ms, 1s, 0.5). Packets arriving later still are written and counted as late.
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
            || self.field_selector.is_some()
            || self.dry_run
            || !self.filter.is_empty()
    }
}

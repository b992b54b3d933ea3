use clap::{Args, Parser, Subcommand};
use podcap_merge::engine::{EngineConfig, Report};
use podcap_merge::live::{run_live, CommandSpec, LiveOptions};
use podcap_merge::offline::{merge_files, Input};
use podcap_merge::sink::{RingOptions, Target};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Capture traffic from many sources and merge it by timestamp into one pcapng stream in which
/// every source interface is its own named interface.
///
/// Live: `podcap-merge --cmd web='ip netns exec web tcpdump -U -w -' --cmd db='…' | wireshark -k -i -`
/// Offline: `podcap-merge merge a.pcap b.pcapng -w all.pcapng`
#[derive(Parser, Debug)]
#[command(
    name = "podcap-merge",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    live: LiveArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
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
struct DemoArgs {
    /// Output file.
    #[arg(
        short = 'w',
        long = "write",
        value_name = "OUT",
        default_value = "demo.pcapng"
    )]
    write: PathBuf,
    /// How many pods the test cluster runs.
    #[arg(long = "pods", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=64))]
    pods: u64,
    /// How long to capture, in seconds.
    #[arg(long = "duration", default_value_t = 5.0)]
    duration: f64,
}

/// Where and how to write, shared by live capture and merge (dumpcap's vocabulary).
#[derive(Args, Debug, Clone)]
struct OutputArgs {
    /// Output file; `-` (the default) writes to standard output. A name ending in .gz is
    /// gzip-compressed.
    #[arg(short = 'w', long = "write", value_name = "OUT", default_value = "-")]
    write: PathBuf,
    /// Ring buffer, as dumpcap: filesize:KB, duration:SEC, interval:SEC, packets:N, files:N.
    /// Files are named PREFIX_00001_YYYYmmddHHMMSS.pcapng after -w.
    #[arg(short = 'b', long = "ring-buffer", value_name = "KEY:VALUE")]
    ring: Vec<String>,
    /// Compress output files (gzip; tshark and Wireshark read .pcapng.gz directly).
    #[arg(long = "compress", value_name = "gzip", value_parser = ["gzip"])]
    compress: Option<String>,
    /// Stop after writing this many packets.
    #[arg(short = 'c', long = "count", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Stop after this many seconds (also -a duration:SEC, as dumpcap).
    #[arg(long = "duration", value_name = "SEC")]
    duration: Option<f64>,
    /// Autostop condition, as dumpcap: duration:SEC or packets:N.
    #[arg(short = 'a', long = "autostop", value_name = "KEY:VALUE")]
    autostop: Vec<String>,
    /// No progress rows and no summary (errors are still printed).
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
}

#[derive(Args, Debug)]
struct MergeArgs {
    #[command(flatten)]
    out: OutputArgs,
    /// Interface name prefix for each input, in order (default: the file stem).
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// Capture files to merge; `-` reads standard input.
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
}

/// Which pods, how to reach them, how to capture (kubectl's and tcpdump's vocabulary).
#[derive(Args, Debug)]
struct PodArgs {
    /// Pods to capture: NAME or pod/NAME, or a workload whose selector names them:
    /// deploy/NAME, sts/NAME, ds/NAME, svc/NAME. A capture filter (BPF) follows `--`.
    #[arg(value_name = "POD|KIND/NAME")]
    targets: Vec<String>,
    /// The capture filter, tcpdump's expression, after `--` (e.g. -- tcp port 80).
    #[arg(last = true, value_name = "FILTER")]
    filter: Vec<String>,
    /// Namespace (default: the kubeconfig context's).
    #[arg(short = 'n', long = "namespace")]
    namespace: Option<String>,
    /// Pods of every namespace.
    #[arg(short = 'A', long = "all-namespaces")]
    all_namespaces: bool,
    /// Label selector, as kubectl (app=mando, tier in (a,b), !canary).
    #[arg(short = 'l', long = "selector")]
    selector: Option<String>,
    /// Field selector, as kubectl (spec.nodeName=node-1).
    #[arg(long = "field-selector")]
    field_selector: Option<String>,
    /// kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster).
    #[arg(long = "kubeconfig", value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// kubeconfig context.
    #[arg(long = "context")]
    context: Option<String>,
    /// Refuse to capture more pods than this (a safety cap).
    #[arg(long = "max-pods", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10000))]
    max_pods: u64,
    /// List what would be captured and how, change nothing.
    #[arg(long = "dry-run")]
    dry_run: bool,
    /// Image of the capture container (needs sh and tcpdump).
    #[arg(long = "image", default_value = podcap_merge::k8s::DEFAULT_IMAGE)]
    image: String,
    /// As kubectl debug: Always, IfNotPresent or Never.
    #[arg(long = "image-pull-policy", value_parser = ["Always", "IfNotPresent", "Never"])]
    image_pull_policy: Option<String>,
    /// Container whose processes the capture container joins (default: the pod's first).
    #[arg(long = "target", value_name = "CONTAINER")]
    target: Option<String>,
    /// Interface to capture in each pod, as tcpdump -i.
    #[arg(short = 'i', long = "interface", default_value = "any")]
    interface: String,
    /// Bytes kept of each packet, as tcpdump -s.
    #[arg(short = 's', long = "snaplen", value_parser = clap::value_parser!(u32).range(1..=262144))]
    snaplen: Option<u32>,
    /// Promiscuous mode (adds NET_ADMIN to the capture container).
    #[arg(long = "promiscuous")]
    promiscuous: bool,
    /// Capabilities of the capture container: auto (NET_RAW, without it if Pod Security
    /// baseline refuses), netraw, netadmin, baseline (none added).
    #[arg(long = "profile", default_value = "auto")]
    profile: podcap_merge::k8s::Profile,
    /// How the capture streams back: auto (exec; attach if exec is forbidden), exec, attach.
    #[arg(long = "via", default_value = "auto")]
    via: podcap_merge::k8s::Via,
    /// No capture process in a pod outlives this many seconds, whatever happens to us.
    #[arg(long = "max-duration", value_name = "SEC", default_value_t = 86400,
          value_parser = clap::value_parser!(u64).range(10..=315_360_000))]
    max_duration: u64,
    /// Seconds a pod may take to start its capture container.
    #[arg(long = "start-timeout", value_name = "SEC", default_value_t = 120)]
    start_timeout: u64,
}

impl PodArgs {
    fn wanted(&self) -> bool {
        !self.targets.is_empty()
            || self.selector.is_some()
            || self.field_selector.is_some()
            || self.dry_run
            || !self.filter.is_empty()
    }
}

#[derive(Args, Debug)]
struct LiveArgs {
    #[command(flatten)]
    pods: PodArgs,
    /// A local command whose stdout is a pcap or pcapng stream, e.g.
    /// web='ip netns exec web tcpdump -U --immediate-mode -i any -w -' (repeatable).
    #[arg(long = "cmd", value_name = "NAME=COMMAND")]
    commands: Vec<CommandSpec>,
    /// Also read a capture stream from standard input, under this name (default "stdin").
    #[arg(long = "stdin", value_name = "NAME", num_args = 0..=1, default_missing_value = "stdin")]
    stdin: Option<String>,
    /// How long to wait for a quiet source before writing later packets of the others
    /// (e.g. 300ms, 1s). Packets arriving later still are written and counted as late.
    #[arg(long = "reorder-window", value_name = "TIME", default_value = "300ms", value_parser = parse_duration)]
    reorder_window: Duration,
    /// Bytes each source may have read ahead of the output (backpressure bound), in KiB.
    #[arg(long = "source-buffer", value_name = "KiB", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(64..=1024 * 1024))]
    source_buffer: u64,
    #[command(flatten)]
    out: OutputArgs,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "ms"),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: expected a time such as 300ms or 1.5s"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        _ => return Err(format!("{s:?}: unit must be ms or s")),
    };
    if !(0.0..=3600.0).contains(&secs) {
        return Err(format!("{s:?}: must be between 0 and 3600 s"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn engine_config(o: &OutputArgs) -> Result<EngineConfig, String> {
    let gzip = o.compress.is_some() || o.write.to_string_lossy().ends_with(".gz");
    let mut ring = RingOptions::default();
    for spec in &o.ring {
        ring.add(spec)?;
    }
    let stdout = o.write.as_os_str() == "-";
    let target = if !o.ring.is_empty() {
        if stdout {
            return Err("-b needs an output file name: add -w PREFIX.pcapng".into());
        }
        if !ring.rotates() {
            return Err(
                "-b files:N needs a condition to switch files: filesize, duration, interval or packets"
                    .into(),
            );
        }
        Target::Ring {
            path: o.write.clone(),
            gzip,
            options: ring,
        }
    } else if stdout {
        if gzip {
            return Err("--compress needs an output file (-w FILE)".into());
        }
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            return Err(
                "standard output is a terminal: pipe the capture into a reader \
                 (| wireshark -k -i -, | tshark -i -) or write it to a file with -w FILE"
                    .into(),
            );
        }
        Target::Stdout
    } else {
        Target::File {
            path: o.write.clone(),
            gzip,
        }
    };
    let mut cfg = EngineConfig::new(target);
    cfg.count = o.count;
    if let Some(d) = o.duration {
        cfg.duration = Some(
            Duration::try_from_secs_f64(d)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("--duration {d}: must be a positive number of seconds"))?,
        );
    }
    for a in &o.autostop {
        let (k, v) = a
            .split_once(':')
            .ok_or_else(|| format!("-a {a}: expected duration:SEC or packets:N"))?;
        let n: u64 = v
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("-a {a}: {v:?} is not a positive whole number"))?;
        match k {
            "duration" => cfg.duration = Some(Duration::from_secs(n)),
            "packets" => cfg.count = Some(n),
            _ => {
                return Err(format!(
                    "-a {a}: unknown condition {k:?}; use duration or packets"
                ))
            }
        }
    }
    cfg.progress = !o.quiet;
    Ok(cfg)
}

fn finish(report: Report, quiet: bool) -> ExitCode {
    if !quiet {
        eprint!("{}", report.summary());
    }
    for e in report.output_error.iter().chain(report.run_error.iter()) {
        eprintln!("podcap-merge: error: {e}");
    }
    if report.output_error.is_some() || report.run_error.is_some() || report.errors() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `merge a.pcap b.pcap -w a.pcap` would truncate an input while it is read.
fn refuse_overwriting_an_input(out: &std::path::Path, inputs: &[PathBuf]) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let Ok(o) = std::fs::metadata(out) else {
        return Ok(());
    };
    for i in inputs {
        if let Ok(m) = std::fs::metadata(i) {
            if m.dev() == o.dev() && m.ino() == o.ino() && o.is_file() {
                return Err(format!(
                    "the output {} is also an input: write the merge to another file",
                    out.display()
                ));
            }
        }
    }
    Ok(())
}

fn run_merge(args: MergeArgs) -> Result<ExitCode, String> {
    if args.names.len() > args.files.len() {
        return Err(format!(
            "{} --name given for {} input(s): give at most one per input",
            args.names.len(),
            args.files.len()
        ));
    }
    if args.files.iter().filter(|f| f.as_os_str() == "-").count() > 1 {
        return Err("standard input (-) can be given only once".into());
    }
    let cfg = engine_config(&args.out)?;
    refuse_overwriting_an_input(&args.out.write, &args.files)?;
    let mut names = args.names.into_iter();
    let inputs: Vec<Input> = args
        .files
        .into_iter()
        .map(|f| Input::new(f, names.next()))
        .collect();
    // Ctrl-C: the output is finished (ISBs, gzip trailer) with what was merged so far
    let stop = std::sync::Arc::new(podcap_merge::stop::Stop::new());
    let signals = stop.clone();
    std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(podcap_merge::live::handle_signals(signals));
        }
    });
    let report = merge_files(&inputs, cfg, stop).map_err(|e| e.to_string())?;
    Ok(finish(report, args.out.quiet))
}

fn run_pods(args: LiveArgs) -> Result<ExitCode, String> {
    if !args.commands.is_empty() || args.stdin.is_some() {
        return Err("pods and --cmd/--stdin cannot be captured in one run".into());
    }
    let p = args.pods;
    let mut cfg = if p.dry_run {
        EngineConfig::new(Target::Stdout)
    } else {
        engine_config(&args.out)?
    };
    cfg.window = Some(args.reorder_window);
    let mut max_duration = Duration::from_secs(p.max_duration);
    if let Some(d) = cfg.duration {
        // the remote processes need not outlive the run by much
        max_duration = max_duration.min(d.saturating_add(Duration::from_secs(60)));
    }
    let opts = podcap_merge::k8s::PodOptions {
        kubeconfig: p.kubeconfig,
        context: p.context,
        namespace: p.namespace,
        all_namespaces: p.all_namespaces,
        selector: p.selector,
        field_selector: p.field_selector,
        targets: p.targets,
        max_pods: p.max_pods as usize,
        dry_run: p.dry_run,
        image: p.image,
        image_pull_policy: p.image_pull_policy,
        target_container: p.target,
        interface: p.interface,
        snaplen: p.snaplen,
        promiscuous: p.promiscuous,
        filter: p.filter,
        profile: p.profile,
        via: p.via,
        max_duration,
        start_timeout: Duration::from_secs(p.start_timeout),
        budget: (args.source_buffer * 1024) as usize,
    };
    let dry = opts.dry_run;
    let report = podcap_merge::k8s::fanout::run_pods(opts, cfg)?;
    if dry {
        return Ok(ExitCode::SUCCESS);
    }
    Ok(finish(report, args.out.quiet))
}

fn run_demo(args: DemoArgs) -> Result<ExitCode, String> {
    let report = podcap_merge::k8s::demo::run(&args.write, args.pods as usize, args.duration)?;
    Ok(finish(report, false))
}

fn run_capture(args: LiveArgs) -> Result<ExitCode, String> {
    if args.pods.wanted() {
        return run_pods(args);
    }
    if args.commands.is_empty() && args.stdin.is_none() {
        return Err(
            "nothing to capture: name pods (-l app=NAME, POD, deploy/NAME), or give --cmd              NAME=COMMAND or --stdin; `podcap-merge merge FILE…` merges files;              `podcap-merge demo` tries it all on a local test cluster"
                .into(),
        );
    }
    let mut seen = std::collections::HashSet::new();
    for c in &args.commands {
        if !seen.insert(c.name.clone()) {
            return Err(format!(
                "--cmd name {:?} is used twice: names must be unique",
                c.name
            ));
        }
    }
    let mut cfg = engine_config(&args.out)?;
    cfg.window = Some(args.reorder_window);
    let opts = LiveOptions {
        commands: args.commands,
        stdin: args.stdin,
        budget: (args.source_buffer * 1024) as usize,
    };
    let report = run_live(opts, cfg).map_err(|e| e.to_string())?;
    Ok(finish(report, args.out.quiet))
}

fn main() -> ExitCode {
    // the test cluster without root runs its pods' "tcpdump" as this binary (see testcluster)
    if let Some(code) = podcap_merge::testcluster::synth::main_if_invoked() {
        return code;
    }
    podcap_merge::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Merge(args)) => run_merge(args),
        Some(Command::Demo(args)) => run_demo(args),
        None => run_capture(cli.live),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("podcap-merge: error: {e}");
            ExitCode::from(2)
        }
    }
}

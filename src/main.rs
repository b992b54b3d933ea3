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

#[derive(Args, Debug)]
struct LiveArgs {
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
    if let Some(e) = &report.output_error {
        eprintln!("podcap-merge: error: {e}");
    }
    if report.output_error.is_some() || report.errors() > 0 {
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

fn run_capture(args: LiveArgs) -> Result<ExitCode, String> {
    if args.commands.is_empty() && args.stdin.is_none() {
        return Err(
            "nothing to capture: give --cmd NAME=COMMAND (repeatable) or --stdin, or use `podcap-merge merge FILE…`"
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
    podcap_merge::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Merge(args)) => run_merge(args),
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

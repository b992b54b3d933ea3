//! The one validated description of a run, built from the command line in one place with
//! every check that relates flags to each other (and to the terminal and the file system).

use super::defs::{
    Cli, Command, DemoArgs, ExtcapAction, LinkArgs, LiveArgs, MergeArgs, OutputArgs,
};
use super::duration::{parse_duration, Time};
use super::messages as msg;
use crate::engine::EngineConfig;
use crate::error::StartError;
use crate::k8s::{PodOptions, Profile, Via};
use crate::live::{CommandSpec, LiveOptions};
use crate::offline::Input;
use crate::sink::{RingOptions, Target};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What to do, with every setting checked.
#[derive(Debug)]
pub enum Run {
    /// `podcap-merge merge FILE…`
    Merge {
        inputs: Vec<Input>,
        engine: EngineConfig,
        quiet: bool,
    },
    /// `--cmd` and `--stdin`
    Local {
        live: LiveOptions,
        engine: EngineConfig,
        quiet: bool,
    },
    /// Pods (`-l`, names, workloads), or `--dry-run`.
    Pods {
        pods: Box<PodOptions>,
        engine: EngineConfig,
        quiet: bool,
    },
    /// `podcap-merge demo`
    Demo {
        out: PathBuf,
        pods: usize,
        duration: Duration,
    },
    /// `podcap-merge completions SHELL`
    Completions { shell: clap_complete::Shell },
    /// `podcap-merge man`
    Man,
    /// `podcap-merge extcap install|uninstall [--dir DIR]`
    Extcap {
        dir: Option<PathBuf>,
        uninstall: bool,
    },
    /// `podcap-merge install-extras --prefix DIR`
    InstallExtras { prefix: PathBuf },
}

const HOUR: Duration = Duration::from_secs(3600);
const TEN_YEARS: Duration = Duration::from_secs(315_360_000);

impl Run {
    pub fn from_cli(cli: Cli) -> Result<Run, StartError> {
        match cli.command {
            Some(Command::Merge(args)) => merge(args),
            Some(Command::Demo(args)) => demo(args),
            Some(Command::Completions(a)) => Ok(Run::Completions { shell: a.shell }),
            Some(Command::Man) => Ok(Run::Man),
            Some(Command::Extcap(a)) => Ok(match a.action {
                ExtcapAction::Install(d) => Run::Extcap {
                    dir: d.dir,
                    uninstall: false,
                },
                ExtcapAction::Uninstall(d) => Run::Extcap {
                    dir: d.dir,
                    uninstall: true,
                },
            }),
            Some(Command::InstallExtras(a)) => Ok(Run::InstallExtras { prefix: a.prefix }),
            None if cli.live.pods.wanted() => pods(cli.live),
            None => local(cli.live),
        }
    }
}

/// `--cmd NAME=COMMAND`, as clap's value parser.
pub fn command_spec(s: &str) -> Result<CommandSpec, String> {
    match s.split_once('=') {
        Some((name, command)) if !name.is_empty() && !command.trim().is_empty() => {
            Ok(CommandSpec {
                name: name.to_string(),
                command: command.to_string(),
            })
        }
        _ => Err(msg::bad_command_spec(s)),
    }
}

fn merge(args: MergeArgs) -> Result<Run, StartError> {
    if args.names.len() > args.files.len() {
        return Err(msg::too_many_names(args.names.len(), args.files.len()).into());
    }
    if args.files.iter().filter(|f| f.as_os_str() == "-").count() > 1 {
        return Err(StartError::Usage(msg::STDIN_TWICE.into()));
    }
    if args.link.correct_skew && args.files.iter().any(|f| f.as_os_str() == "-") {
        return Err(StartError::Usage(msg::CORRECT_SKEW_STDIN.into()));
    }
    let mut engine = engine_config(&args.out)?;
    set_link(&mut engine, &args.link)?;
    refuse_overwriting_an_input(&args.out.write, &args.files)?;
    let mut names = args.names.into_iter();
    let inputs = args
        .files
        .into_iter()
        .map(|f| Input::new(f, names.next()))
        .collect();
    Ok(Run::Merge {
        inputs,
        engine,
        quiet: args.out.quiet,
    })
}

fn demo(args: DemoArgs) -> Result<Run, StartError> {
    let duration = args
        .duration
        .within("--duration", Duration::from_millis(1), HOUR)?;
    Ok(Run::Demo {
        out: args.write,
        pods: args.pods as usize,
        duration,
    })
}

fn live_window(args: &LiveArgs) -> Result<Duration, String> {
    args.reorder_window
        .within("--reorder-window", Duration::ZERO, HOUR)
}

fn local(args: LiveArgs) -> Result<Run, StartError> {
    if args.commands.is_empty() && args.stdin.is_none() {
        return Err(StartError::Usage(msg::NOTHING_TO_CAPTURE.into()));
    }
    let mut seen = std::collections::HashSet::new();
    for c in &args.commands {
        if !seen.insert(c.name.as_str()) {
            return Err(msg::duplicate_cmd_name(&c.name).into());
        }
    }
    let mut engine = engine_config(&args.out)?;
    engine.window = Some(live_window(&args)?);
    set_link(&mut engine, &args.link)?;
    Ok(Run::Local {
        engine,
        quiet: args.out.quiet,
        live: LiveOptions {
            commands: args.commands,
            stdin: args.stdin,
            budget: (args.source_buffer * 1024) as usize,
        },
    })
}

fn pods(args: LiveArgs) -> Result<Run, StartError> {
    if !args.commands.is_empty() || args.stdin.is_some() {
        return Err(StartError::Usage(msg::PODS_AND_LOCAL.into()));
    }
    let window = live_window(&args)?;
    let p = args.pods;
    let dry_run = match p.dry_run.as_deref() {
        Some("server") => return Err(StartError::Usage(msg::DRY_RUN_SERVER.into())),
        Some("client") => true,
        _ => false,
    };
    let mut engine = if dry_run {
        EngineConfig::new(Target::Stdout)
    } else {
        engine_config(&args.out)?
    };
    engine.window = Some(window);
    if p.all && (p.selector.is_some() || !p.targets.is_empty()) {
        return Err(StartError::Usage(msg::ALL_AND_SELECTION.into()));
    }
    if let Some(words) = looks_like_a_filter(&p.targets) {
        return Err(msg::targets_look_like_a_filter(&words).into());
    }
    set_link(&mut engine, &args.link)?;
    let c = p.capture;
    let k = p.container;
    let filter = match (c.filter_option, c.filter) {
        (Some(_), after) if !after.is_empty() => {
            return Err(StartError::Usage(msg::FILTER_TWICE.into()))
        }
        (Some(f), _) if f.trim().is_empty() => Vec::new(),
        (Some(f), _) => vec![f],
        (None, after) => after,
    };
    let mut max_duration =
        k.max_duration
            .within("--max-duration", Duration::from_secs(10), TEN_YEARS)?;
    if let Some(d) = engine.duration {
        // the remote processes need not outlive the run by much
        max_duration = max_duration.min(d.saturating_add(Duration::from_secs(60)));
    }
    let profile = match k.profile.as_str() {
        "netraw" => Profile::NetRaw,
        "netadmin" => Profile::NetAdmin,
        "baseline" => Profile::Baseline,
        _ => Profile::Auto,
    };
    let via = match k.via.as_str() {
        "exec" => Via::Exec,
        "attach" => Via::Attach,
        _ => Via::Auto,
    };
    let pods = PodOptions {
        kubeconfig: p.kubeconfig,
        context: p.context,
        namespace: p.namespace,
        all_namespaces: p.all_namespaces,
        // --all: no label selector, which selects every pod
        selector: if p.all {
            Some(String::new())
        } else {
            p.selector
        },
        field_selector: p.field_selector,
        targets: p.targets,
        max_pods: p.max_pods as usize,
        dry_run,
        image: k.image,
        image_pull_policy: k.image_pull_policy,
        target_container: k.target,
        interface: c.interface,
        // tcpdump's -s 0: the whole packet, which is also tcpdump's default
        snaplen: c.snaplen.filter(|s| *s > 0),
        promiscuous: c.promiscuous,
        filter,
        profile,
        via,
        max_duration,
        start_timeout: k
            .start_timeout
            .within("--start-timeout", Duration::from_secs(1), HOUR)?,
        budget: (args.source_buffer * 1024) as usize,
    };
    Ok(Run::Pods {
        pods: Box::new(pods),
        engine,
        quiet: args.out.quiet,
    })
}

/// Words of a capture filter that reached the pod names because `--` was left out
/// (`podcap-merge -l app=x tcp port 80`): a protocol or primitive keyword, or a bare number.
/// A pod really named like that is still reachable as pod/NAME.
fn looks_like_a_filter(targets: &[String]) -> Option<Vec<String>> {
    const WORDS: &[&str] = &[
        "tcp",
        "udp",
        "icmp",
        "icmp6",
        "sctp",
        "arp",
        "rarp",
        "ip",
        "ip6",
        "ether",
        "vlan",
        "port",
        "portrange",
        "host",
        "net",
        "src",
        "dst",
        "and",
        "or",
        "not",
        "proto",
        "less",
        "greater",
        "broadcast",
        "multicast",
    ];
    let suspicious = |t: &String| {
        WORDS.contains(&t.as_str())
            || (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            || t.starts_with('(')
    };
    let first = targets.iter().position(suspicious)?;
    Some(targets[first..].to_vec())
}

/// The output and the stop conditions, from `-w`, `-b`, `--compress`, `-c`, `--duration`, `-a`.
fn engine_config(o: &OutputArgs) -> Result<EngineConfig, StartError> {
    let gzip = o.compress.is_some() || o.write.to_string_lossy().ends_with(".gz");
    let mut ring = RingOptions::default();
    for spec in &o.ring {
        ring_option(&mut ring, spec)?;
    }
    let stdout = o.write.as_os_str() == "-";
    let target = if !o.ring.is_empty() {
        if stdout {
            return Err(StartError::Usage(msg::RING_NEEDS_FILE.into()));
        }
        if !ring.rotates() {
            return Err(StartError::Usage(msg::RING_NEEDS_SWITCH.into()));
        }
        Target::Ring {
            path: o.write.clone(),
            gzip,
            options: ring,
        }
    } else if stdout {
        if gzip {
            return Err(StartError::Usage(msg::COMPRESS_NEEDS_FILE.into()));
        }
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            return Err(StartError::Usage(msg::STDOUT_IS_TERMINAL.into()));
        }
        Target::Stdout
    } else {
        Target::File {
            path: o.write.clone(),
            gzip,
        }
    };
    let mut cfg = EngineConfig::new(target);
    cfg.count = o.stop.count;
    if let Some(d) = o.stop.duration {
        cfg.duration = Some(d.within("--duration", Duration::from_nanos(1), TEN_YEARS)?);
    }
    for a in &o.stop.autostop {
        let (k, v) = a
            .split_once(':')
            .ok_or_else(|| msg::bad_key_value("-a", a, "-a duration:60 or -a packets:1000"))?;
        match k {
            "duration" => {
                let d = v.parse::<Time>().map_err(|e| format!("-a {a}: {e}"))?;
                cfg.duration =
                    Some(d.within("-a duration:", Duration::from_nanos(1), TEN_YEARS)?);
            }
            "packets" => cfg.count = Some(count(v).ok_or_else(|| msg::not_a_count("-a", a, v))?),
            _ => return Err(msg::unknown_key("-a", a, k, "duration or packets").into()),
        }
    }
    cfg.progress = !o.quiet;
    Ok(cfg)
}

/// `--dedup`, `--latency-report FILE`, `--no-link`.
/// Packet identity (`--no-link`, `--dedup`, `--latency-report`) and the clocks it measures
/// (`--correct-skew`), as every kind of run takes them.
fn set_link(engine: &mut EngineConfig, a: &LinkArgs) -> Result<(), StartError> {
    engine.clocks.correct = a.correct_skew;
    if a.no_link {
        engine.link = None;
        return Ok(());
    }
    if let Some(path) = &a.latency_report {
        podcap_identity::report::ReportFormat::of(path)?;
    }
    let mut cfg = crate::link::LinkConfig {
        latency_report: a.latency_report.clone(),
        ..Default::default()
    };
    cfg.options.dedup = a.dedup;
    engine.link = Some(cfg);
    Ok(())
}

fn count(v: &str) -> Option<u64> {
    v.parse().ok().filter(|n| *n > 0)
}

/// One `-b KEY:VALUE`, as dumpcap takes it (times also as `30s`, `5m`, `1h`).
fn ring_option(ring: &mut RingOptions, spec: &str) -> Result<(), String> {
    let (key, value) = spec
        .split_once(':')
        .ok_or_else(|| msg::bad_key_value("-b", spec, "-b filesize:100000 or -b files:10"))?;
    let n = || count(value).ok_or_else(|| msg::not_a_count("-b", spec, value));
    let time = || -> Result<Duration, String> {
        let d = parse_duration(value).map_err(|e| format!("-b {e}"))?;
        if d.is_zero() {
            return Err(msg::not_a_count("-b", spec, value));
        }
        Ok(d)
    };
    match key {
        "filesize" => ring.filesize_kb = Some(n()?),
        "packets" => ring.packets = Some(n()?),
        "files" => ring.files = Some(n()? as usize),
        "duration" => ring.duration = Some(time()?),
        "interval" => {
            let d = time()?;
            if d.subsec_nanos() != 0 {
                return Err(msg::whole_seconds("-b", spec));
            }
            ring.interval = Some(d.as_secs());
        }
        _ => {
            return Err(msg::unknown_key(
                "-b",
                spec,
                key,
                "filesize, duration, interval, packets or files",
            ))
        }
    }
    Ok(())
}

/// `merge a.pcap b.pcap -w a.pcap` would truncate an input while it is read.
fn refuse_overwriting_an_input(out: &Path, inputs: &[PathBuf]) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let Ok(o) = std::fs::metadata(out) else {
        return Ok(());
    };
    for i in inputs {
        if let Ok(m) = std::fs::metadata(i) {
            if m.dev() == o.dev() && m.ino() == o.ino() && o.is_file() {
                return Err(msg::output_is_input(out));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn run(args: &[&str]) -> Result<Run, StartError> {
        let mut argv = vec!["podcap-merge"];
        argv.extend_from_slice(args);
        Run::from_cli(Cli::try_parse_from(argv).map_err(|e| StartError::Usage(e.to_string()))?)
    }

    #[test]
    fn command_specs() {
        let s = command_spec("web=tcpdump -w - -i any").unwrap();
        assert_eq!(s.name, "web");
        assert_eq!(s.command, "tcpdump -w - -i any");
        assert!(command_spec("=x").is_err());
        assert!(command_spec("web").is_err());
    }

    #[test]
    fn every_time_flag_takes_every_form() {
        let Ok(Run::Local { engine, .. }) = run(&[
            "--cmd",
            "a=true",
            "-w",
            "/dev/null",
            "--reorder-window",
            "0.5",
            "--duration",
            "1m",
        ]) else {
            panic!("a local run")
        };
        assert_eq!(engine.window, Some(Duration::from_millis(500)));
        assert_eq!(engine.duration, Some(Duration::from_secs(60)));
        let Ok(Run::Local { engine, .. }) =
            run(&["--cmd", "a=true", "-w", "/dev/null", "-a", "duration:300ms"])
        else {
            panic!("a local run")
        };
        assert_eq!(engine.duration, Some(Duration::from_millis(300)));
        assert_eq!(engine.window, Some(crate::merge::DEFAULT_WINDOW));
        let Ok(Run::Pods { pods, .. }) = run(&[
            "-l",
            "app=x",
            "--dry-run",
            "--max-duration",
            "1h",
            "--start-timeout",
            "90",
        ]) else {
            panic!("a pod run")
        };
        assert_eq!(pods.max_duration, HOUR);
        assert_eq!(pods.start_timeout, Duration::from_secs(90));
        let Ok(Run::Demo { duration, .. }) = run(&["demo", "--duration", "1500ms"]) else {
            panic!("a demo run")
        };
        assert_eq!(duration, Duration::from_millis(1500));
    }

    fn pod_run(args: &[&str]) -> Result<PodOptions, String> {
        match run(args) {
            Ok(Run::Pods { pods, .. }) => Ok(*pods),
            Ok(other) => panic!("not a pod run: {other:?}"),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn tcpdump_dumpcap_and_kubectl_habits() {
        // -s 0 is the whole packet, as tcpdump takes it
        assert_eq!(
            pod_run(&["-l", "a=b", "--dry-run", "-s", "0"])
                .unwrap()
                .snaplen,
            None
        );
        assert_eq!(
            pod_run(&["-l", "a=b", "--dry-run", "-s", "96"])
                .unwrap()
                .snaplen,
            Some(96)
        );
        // -f as dumpcap and ksniff: the same filter as after --
        let f = pod_run(&["-l", "a=b", "--dry-run", "-f", "tcp port 80"]).unwrap();
        let after = pod_run(&["-l", "a=b", "--dry-run", "--", "tcp", "port", "80"]).unwrap();
        assert_eq!(f.filter, ["tcp port 80"]);
        assert_eq!(after.filter.join(" "), f.filter.join(" "));
        // -f alone asks for pods (as a filter after -- does)
        assert!(pod_run(&["-f", "udp", "--dry-run"]).is_ok());
        let e = pod_run(&["-l", "a=b", "--dry-run", "-f", "tcp", "--", "udp"]).unwrap_err();
        assert!(e.contains("given twice"), "{e}");
        // -p is accepted: no promiscuous mode, the default
        assert!(
            !pod_run(&["-l", "a=b", "--dry-run", "-p"])
                .unwrap()
                .promiscuous
        );
        assert!(run(&["-l", "a=b", "--dry-run", "-p", "--promiscuous"]).is_err());
        // kubectl's --dry-run forms; a bare --dry-run never takes the next word as its value
        assert!(pod_run(&["-l", "a=b", "--dry-run=client"]).unwrap().dry_run);
        let p = pod_run(&["--dry-run", "mando-1"]).unwrap();
        assert!(p.dry_run);
        assert_eq!(p.targets, ["mando-1"]);
        assert!(
            !pod_run(&["-l", "a=b", "--dry-run=none", "-w", "/dev/null"])
                .unwrap()
                .dry_run
        );
        let e = pod_run(&["-l", "a=b", "--dry-run=server"]).unwrap_err();
        assert!(e.contains("--dry-run=server is not supported"), "{e}");
        // --all: every pod (no label selector)
        assert_eq!(
            pod_run(&["--all", "--dry-run"])
                .unwrap()
                .selector
                .as_deref(),
            Some("")
        );
        assert!(pod_run(&["--all", "-l", "a=b", "--dry-run"]).is_err());
    }

    #[test]
    fn a_filter_without_its_double_dash_is_not_taken_for_pod_names() {
        for words in [
            &["tcp", "port", "80"][..],
            &["mando-1", "port", "80"],
            &["host", "10.0.0.1"],
            &["80"],
            &["udp"],
        ] {
            let mut a = vec!["-n", "shop", "--dry-run"];
            a.extend_from_slice(words);
            let e = pod_run(&a).unwrap_err();
            assert!(e.contains("goes after `--`"), "{words:?}: {e}");
            assert!(e.contains("pod/NAME"), "{e}");
        }
        let e = pod_run(&["-n", "shop", "mando-1", "tcp", "port", "80"]).unwrap_err();
        assert!(
            e.starts_with("`tcp port 80` looks like a capture filter"),
            "{e}"
        );
        // real names, and such a name written as pod/NAME, are pods
        assert!(pod_run(&["-n", "shop", "--dry-run", "mando-1", "web-80"]).is_ok());
        assert!(pod_run(&["-n", "shop", "--dry-run", "pod/tcp", "pod/80"]).is_ok());
    }

    #[test]
    fn help_is_one_page_for_both_flags() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let render = |args: &[&str]| {
            let mut argv = vec!["podcap-merge"];
            argv.extend_from_slice(args);
            let e = super::super::defs::command("podcap-merge")
                .try_get_matches_from(argv)
                .unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
            e.to_string()
        };
        for sub in [
            &[][..],
            &["merge"],
            &["demo"],
            &["extcap", "install"],
            &["install-extras"],
        ] {
            let mut h = sub.to_vec();
            h.push("-h");
            let mut help = sub.to_vec();
            help.push("--help");
            assert_eq!(render(&h), render(&help), "{sub:?}");
        }
        let top = render(&["--help"]);
        let at = |s: &str| top.find(s).unwrap_or_else(|| panic!("{s} missing:\n{top}"));
        // pods first: the pod usage line, then the headings in dumpcap's order, then examples
        assert!(at("Usage: podcap-merge [POD|KIND/NAME]...") < at("--cmd NAME=COMMAND"));
        let headings = [
            "\nSelection:",
            "\nCapture container:",
            "\nCapture:",
            "\nLive merge:",
            "\nOutput:",
            "\nStop conditions:",
            "\nExamples:",
        ];
        for w in headings.windows(2) {
            assert!(at(w[0]) < at(w[1]), "{} before {}", w[0], w[1]);
        }
        // each example on its own line, after its comment
        assert!(top.contains("  # Capture every pod labelled app=mando in namespace shop, live in Wireshark\n  podcap-merge -n shop -l app=mando | wireshark -k -i -\n"));
    }

    #[test]
    fn copies_across_pods() {
        let link = |args: &[&str]| match run(args) {
            Ok(Run::Merge { engine, .. } | Run::Local { engine, .. }) => engine.link,
            other => panic!("{other:?}"),
        };
        let l = link(&["merge", "a.pcap", "-w", "/dev/null"]).expect("linked by default");
        assert!(!l.options.dedup && l.latency_report.is_none());
        let l = link(&[
            "--cmd",
            "a=true",
            "-w",
            "/dev/null",
            "--dedup",
            "--latency-report",
            "l.JSON",
        ])
        .unwrap();
        assert!(l.options.dedup);
        assert_eq!(l.latency_report, Some(PathBuf::from("l.JSON")));
        assert_eq!(
            link(&["merge", "a.pcap", "-w", "/dev/null", "--no-link"]),
            None
        );
        let Err(e) = run(&[
            "merge",
            "a.pcap",
            "-w",
            "/dev/null",
            "--latency-report",
            "l.txt",
        ]) else {
            panic!()
        };
        assert!(e.to_string().contains(".csv or .json"), "{e}");
    }

    #[test]
    fn ring_options() {
        let mut r = RingOptions::default();
        ring_option(&mut r, "duration:1m").unwrap();
        ring_option(&mut r, "interval:3600").unwrap();
        ring_option(&mut r, "filesize:100").unwrap();
        assert_eq!(r.duration, Some(Duration::from_secs(60)));
        assert_eq!(r.interval, Some(3600));
        assert!(ring_option(&mut r, "interval:1.5").is_err());
        assert!(ring_option(&mut r, "files:0").is_err());
        assert!(ring_option(&mut r, "size:3").is_err());
        assert!(ring_option(&mut r, "files").is_err());
    }

    #[test]
    fn contradictions_are_refused() {
        for bad in [
            &["--cmd", "a=true", "--cmd", "a=false", "-w", "/dev/null"][..],
            &["-l", "app=x", "--cmd", "a=true"],
            &["--cmd", "a=true", "-b", "files:3", "-w", "x.pcapng"],
            &[
                "--cmd",
                "a=true",
                "--reorder-window",
                "2h",
                "-w",
                "/dev/null",
            ],
            &["-l", "app=x", "--max-duration", "5s", "--dry-run"],
            &["demo", "--duration", "0"],
            &["merge", "a.pcap", "-w", "/dev/null", "--dedup", "--no-link"],
            &[
                "merge",
                "a.pcap",
                "-w",
                "/dev/null",
                "--latency-report",
                "l.txt",
            ],
            &[
                "--cmd",
                "a=true",
                "-w",
                "/dev/null",
                "--latency-report",
                "l",
            ],
        ] {
            assert!(run(bad).is_err(), "{bad:?}");
        }
    }
}

//! The one validated description of a run, built from the command line in one place with
//! every check that relates flags to each other (and to the terminal and the file system).

use super::defs::{Cli, Command, DemoArgs, LinkArgs, LiveArgs, MergeArgs, OutputArgs};
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
}

const HOUR: Duration = Duration::from_secs(3600);
const TEN_YEARS: Duration = Duration::from_secs(315_360_000);

impl Run {
    pub fn from_cli(cli: Cli) -> Result<Run, StartError> {
        match cli.command {
            Some(Command::Merge(args)) => merge(args),
            Some(Command::Demo(args)) => demo(args),
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
    let mut engine = engine_config(&args.out)?;
    engine.link = link_config(&args.link)?;
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
    engine.link = link_config(&args.link)?;
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
    let mut engine = if args.pods.dry_run {
        EngineConfig::new(Target::Stdout)
    } else {
        engine_config(&args.out)?
    };
    engine.window = Some(window);
    engine.link = link_config(&args.link)?;
    let p = args.pods;
    let c = p.capture;
    let mut max_duration =
        c.max_duration
            .within("--max-duration", Duration::from_secs(10), TEN_YEARS)?;
    if let Some(d) = engine.duration {
        // the remote processes need not outlive the run by much
        max_duration = max_duration.min(d.saturating_add(Duration::from_secs(60)));
    }
    let profile = match c.profile.as_str() {
        "netraw" => Profile::NetRaw,
        "netadmin" => Profile::NetAdmin,
        "baseline" => Profile::Baseline,
        _ => Profile::Auto,
    };
    let via = match c.via.as_str() {
        "exec" => Via::Exec,
        "attach" => Via::Attach,
        _ => Via::Auto,
    };
    let pods = PodOptions {
        kubeconfig: p.kubeconfig,
        context: p.context,
        namespace: p.namespace,
        all_namespaces: p.all_namespaces,
        selector: p.selector,
        field_selector: p.field_selector,
        targets: p.targets,
        max_pods: p.max_pods as usize,
        dry_run: p.dry_run,
        image: c.image,
        image_pull_policy: c.image_pull_policy,
        target_container: c.target,
        interface: c.interface,
        snaplen: c.snaplen,
        promiscuous: c.promiscuous,
        filter: p.filter,
        profile,
        via,
        max_duration,
        start_timeout: c
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
    cfg.count = o.count;
    if let Some(d) = o.duration {
        cfg.duration = Some(d.within("--duration", Duration::from_nanos(1), TEN_YEARS)?);
    }
    for a in &o.autostop {
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
fn link_config(a: &LinkArgs) -> Result<Option<crate::link::LinkConfig>, StartError> {
    if a.no_link {
        return Ok(None);
    }
    if let Some(path) = &a.latency_report {
        podcap_identity::report::ReportFormat::of(path)?;
    }
    let mut cfg = crate::link::LinkConfig {
        latency_report: a.latency_report.clone(),
        ..Default::default()
    };
    cfg.options.dedup = a.dedup;
    Ok(Some(cfg))
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

//! `podcap-merge`: parse the command line into one validated [`Run`], run it, report. The same
//! binary answers Wireshark's extcap calls ([`podcap_merge::extcap`]) and, run under the name
//! `kubectl-podcap`, is the kubectl plugin `kubectl podcap`.

use podcap_merge::engine::Report;
use podcap_merge::error::StartError;
use podcap_merge::extcap;
use podcap_merge::flags::{self, Run};
use podcap_merge::install;
use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    // the demo's test cluster without root runs its pods' "tcpdump" as this binary
    #[cfg(feature = "demo")]
    if let Some(code) = podcap_testcluster::synth::main_if_invoked() {
        return code;
    }
    podcap_merge::init_logging();
    let args: Vec<OsString> = std::env::args_os().collect();
    let name = flags::program_name(args.first().map(OsString::as_os_str));
    let run = if extcap::invoked(&args) {
        match extcap::run(&args) {
            Ok(extcap::Outcome::Done(code)) => return code,
            Ok(extcap::Outcome::Capture(run)) => Ok(*run),
            Err(e) => Err(e),
        }
    } else {
        flags::parse_from(args)
    };
    match run.and_then(execute) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{name}: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn execute(run: Run) -> Result<ExitCode, StartError> {
    match run {
        Run::Merge {
            inputs,
            engine,
            quiet,
        } => Ok(finish(
            podcap_merge::offline::merge_files(&inputs, engine)?,
            quiet,
        )),
        Run::Local {
            live,
            engine,
            quiet,
        } => Ok(finish(podcap_merge::live::run_live(live, engine)?, quiet)),
        Run::Pods {
            pods,
            engine,
            quiet,
        } => {
            let dry = pods.dry_run;
            let report = podcap_merge::k8s::fanout::run_pods(*pods, engine)?;
            Ok(if dry {
                ExitCode::SUCCESS
            } else {
                finish(report, quiet)
            })
        }
        Run::Demo {
            out,
            pods,
            duration,
        } => demo(&out, pods, duration),
        Run::Completions { shell } => {
            install::completions(shell, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Run::Man => {
            install::man(&mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Run::Extcap { dir, uninstall } => extcap_link(dir, uninstall),
        Run::InstallExtras { prefix } => {
            let done = install::install_extras(&prefix).map_err(|e| StartError::Usage(e.0))?;
            for (what, path) in &done.files {
                println!("{what}: {}", path.display());
            }
            for n in &done.notes {
                println!("note: {n}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `extcap install|uninstall`: places or removes the link and says where.
fn extcap_link(dir: Option<std::path::PathBuf>, uninstall: bool) -> Result<ExitCode, StartError> {
    let usage = |e: install::InstallError| StartError::Usage(e.0);
    if uninstall {
        match install::extcap_uninstall(dir).map_err(usage)? {
            Some(link) => println!("removed {}", link.display()),
            None => println!("no podcap-merge link was installed there"),
        }
    } else {
        let link = install::extcap_install(dir).map_err(usage)?;
        println!(
            "linked {}: restart Wireshark (or run `tshark -D`) to see the \"{}\" interface \
             \"Kubernetes pods\"; capture with `tshark -i {} -o extcap.{}.namespace:NS`",
            link.display(),
            extcap::INTERFACE,
            extcap::INTERFACE,
            extcap::INTERFACE
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "demo")]
fn demo(
    out: &std::path::Path,
    pods: usize,
    d: std::time::Duration,
) -> Result<ExitCode, StartError> {
    Ok(finish(podcap_merge::k8s::demo::run(out, pods, d)?, false))
}

#[cfg(not(feature = "demo"))]
fn demo(_: &std::path::Path, _: usize, _: std::time::Duration) -> Result<ExitCode, StartError> {
    Err(StartError::Unsupported(flags::messages::NO_DEMO))
}

/// The summary (unless quiet), the run's own errors, and the exit status: 1 when the output,
/// the run or any source failed.
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

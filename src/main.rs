//! `podcap-merge`: parse the command line into one validated [`Run`], run it, report.

use podcap_merge::engine::Report;
use podcap_merge::error::StartError;
use podcap_merge::flags::{self, Run};
use std::process::ExitCode;

fn main() -> ExitCode {
    // the demo's test cluster without root runs its pods' "tcpdump" as this binary
    #[cfg(feature = "demo")]
    if let Some(code) = podcap_testcluster::synth::main_if_invoked() {
        return code;
    }
    podcap_merge::init_logging();
    match flags::parse().and_then(execute) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("podcap-merge: error: {e}");
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
    }
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

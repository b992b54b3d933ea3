//! The command line, as ripgrep organises it: [`defs`] holds clap's definitions (grouped by
//! help heading), [`run`] turns them into one validated [`Run`] with every cross-flag check,
//! [`duration`] is the one parser of every time flag, and [`messages`] holds what the command
//! line says back when it cannot run.

pub mod defs;
pub mod duration;
pub mod messages;
pub mod run;

pub use run::Run;

use crate::error::StartError;
use clap::Parser;

/// Parses the process's arguments into a [`Run`]. clap's own errors (unknown flags, `--help`)
/// exit the process as clap does (status 2 for errors).
pub fn parse() -> Result<Run, StartError> {
    Run::from_cli(defs::Cli::parse())
}

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
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::FromArgMatches;
use std::ffi::{OsStr, OsString};
use std::path::Path;

/// The product's own name.
pub const NAME: &str = "podcap-merge";
/// The name when run as the kubectl plugin (`kubectl podcap` runs `kubectl-podcap`).
pub const KUBECTL_NAME: &str = "kubectl podcap";

/// The name the program was called by, for its help and messages: `kubectl podcap` when the
/// file run is `kubectl-podcap` (how kubectl, and krew's link, run a plugin), else
/// `podcap-merge`.
pub fn program_name(argv0: Option<&OsStr>) -> &'static str {
    let stem = argv0
        .and_then(|a| Path::new(a).file_stem())
        .map(|s| s.to_string_lossy().into_owned());
    match stem.as_deref() {
        Some("kubectl-podcap") => KUBECTL_NAME,
        _ => NAME,
    }
}

/// Parses the process's arguments into a [`Run`]. `--help` and `--version` print and exit 0;
/// clap's own errors exit 2 as clap does, except an unknown option, which gets our message
/// (clap's tip to write `-- --frobnicate` would put it into the capture filter).
pub fn parse() -> Result<Run, StartError> {
    parse_from(std::env::args_os())
}

/// [`parse`] on given arguments (the first is the program's name).
pub fn parse_from<I, T>(args: I) -> Result<Run, StartError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let name = program_name(args.first().map(OsString::as_os_str));
    let matches = match defs::command(name).try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::UnknownArgument => {
            return Err(StartError::Usage(unknown_argument(&e, name)))
        }
        Err(e) => e.exit(),
    };
    let cli = defs::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    Run::from_cli(cli)
}

fn unknown_argument(e: &clap::Error, name: &str) -> String {
    let text = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let arg = text(ContextKind::InvalidArg).unwrap_or_default();
    let similar = text(ContextKind::SuggestedArg)
        .map(|s| format!(" (did you mean '{s}'?)"))
        .unwrap_or_default();
    if arg.starts_with('-') {
        messages::unknown_option(&arg, &similar, name)
    } else {
        messages::unexpected_argument(&arg, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_name_comes_from_the_file_run() {
        let n = |s: &str| program_name(Some(OsStr::new(s)));
        assert_eq!(n("/home/u/.krew/bin/kubectl-podcap"), KUBECTL_NAME);
        assert_eq!(n("kubectl-podcap.exe"), KUBECTL_NAME);
        assert_eq!(n("/usr/bin/podcap-merge"), NAME);
        assert_eq!(n("/usr/lib/wireshark/extcap/podcap-merge"), NAME);
        assert_eq!(program_name(None), NAME);
    }

    #[test]
    fn an_unknown_option_is_not_told_to_go_after_the_double_dash() {
        let e = parse_from(["podcap-merge", "-l", "app=x", "--frobnicate"]).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("'--frobnicate'"), "{m}");
        assert!(!m.contains("-- --frobnicate"), "{m}");
        assert!(m.contains("podcap-merge --help"), "{m}");
        let m = parse_from(["podcap-merge", "--namespce", "shop"])
            .unwrap_err()
            .to_string();
        assert!(m.contains("did you mean '--namespace'"), "{m}");
    }
}

use clap::{Parser, Subcommand};
use podcap_merge::offline::{merge_files, Input};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

/// Capture traffic from many sources and merge it by timestamp into one pcapng stream,
/// each source interface a named interface.
#[derive(Parser, Debug)]
#[command(name = "podcap-merge", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Merge capture files (pcap or pcapng, any byte order) by timestamp into one pcapng.
    ///
    /// Every input interface becomes its own output interface, named after the file stem
    /// and its own interface name (a/eth0). Bad inputs are reported and skipped from the
    /// point of the fault; the output stays valid and the exit status is 1.
    Merge {
        /// Output file; `-` (the default) writes to standard output.
        #[arg(short = 'w', long = "write", value_name = "OUT", default_value = "-")]
        write: PathBuf,
        /// Interface name prefix for each input, in order (default: the file stem).
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
        /// Capture files to merge; `-` reads standard input.
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
    },
}

fn stdout_file() -> io::Result<File> {
    // A plain file on fd 1: Rust's Stdout is line-buffered, which is wrong for binary data.
    Ok(File::from(io::stdout().as_fd().try_clone_to_owned()?))
}

fn run_merge(write: PathBuf, names: Vec<String>, files: Vec<PathBuf>) -> Result<bool, String> {
    if names.len() > files.len() {
        return Err(format!(
            "{} --name given for {} input(s): give at most one per input",
            names.len(),
            files.len()
        ));
    }
    if files.iter().filter(|f| f.as_os_str() == "-").count() > 1 {
        return Err("standard input (-) can be given only once".into());
    }
    let mut names = names.into_iter();
    let inputs: Vec<Input> = files
        .into_iter()
        .map(|f| Input::new(f, names.next()))
        .collect();
    let out: Box<dyn Write> = if write.as_os_str() == "-" {
        Box::new(stdout_file().map_err(|e| format!("cannot use standard output: {e}"))?)
    } else {
        Box::new(
            File::create(&write).map_err(|e| format!("cannot create {}: {e}", write.display()))?,
        )
    };
    let report =
        merge_files(&inputs, out).map_err(|e| format!("writing the output failed: {e}"))?;
    eprint!("{}", report.summary());
    Ok(report.errors() == 0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Merge {
            write,
            names,
            files,
        } => run_merge(write, names, files),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("podcap-merge: error: {e}");
            ExitCode::from(2)
        }
    }
}

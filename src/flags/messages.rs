//! What the command line says back to the user when it cannot run, in one place.

use std::path::Path;

pub const NOTHING_TO_CAPTURE: &str = "nothing to capture: name pods (-l app=NAME, POD, \
     deploy/NAME), or give --cmd NAME=COMMAND or --stdin; `podcap-merge merge FILE…` merges \
     files; `podcap-merge demo` tries it all on a local test cluster";
pub const PODS_AND_LOCAL: &str = "pods and --cmd/--stdin cannot be captured in one run";
pub const RING_NEEDS_FILE: &str = "-b needs an output file name: add -w PREFIX.pcapng";
pub const RING_NEEDS_SWITCH: &str =
    "-b files:N needs a condition to switch files: filesize, duration, interval or packets";
pub const COMPRESS_NEEDS_FILE: &str = "--compress needs an output file (-w FILE)";
pub const STDOUT_IS_TERMINAL: &str = "standard output is a terminal: pipe the capture into a \
     reader (| wireshark -k -i -, | tshark -i -) or write it to a file with -w FILE";
pub const STDIN_TWICE: &str = "standard input (-) can be given only once";
pub const CORRECT_SKEW_STDIN: &str = "--correct-skew reads the files twice (once to learn the \
     clocks, once to merge) and standard input (-) cannot be read twice: save it to a file first \
     (e.g. `tcpdump -w capture.pcap`), or merge without --correct-skew";
pub const DRY_RUN_SERVER: &str = "--dry-run=server is not supported: --dry-run (or \
     --dry-run=client) lists the pods and how each would be captured without changing anything";
pub const ALL_AND_SELECTION: &str = "--all takes every pod of the namespace: drop -l and the pod \
     names, or drop --all";
pub const FILTER_TWICE: &str = "the capture filter is given twice (-f and after --): give it once";
pub const NO_DEMO: &str = "this podcap-merge was built without the demo feature \
     (cargo install --no-default-features): build it with default features to run the demo";

/// Pod names that are really a capture filter whose `--` was left out.
pub fn targets_look_like_a_filter(words: &[String]) -> String {
    let w = words.join(" ");
    format!(
        "`{w}` looks like a capture filter, not pod names: the filter goes after `--` \
         (… -- {w}) or in -f '{w}'; a pod really named like that is pod/NAME"
    )
}

/// An option clap does not know. (Not clap's tip "use `-- --frobnicate`": after `--` comes
/// the capture filter.)
pub fn unknown_option(arg: &str, similar: &str, name: &str) -> String {
    format!("unknown option '{arg}'{similar}; `{name} --help` lists the options")
}

pub fn unexpected_argument(arg: &str, name: &str) -> String {
    format!("unexpected argument '{arg}'; `{name} --help` shows the usage")
}

pub fn duplicate_cmd_name(name: &str) -> String {
    format!("--cmd name {name:?} is used twice: names must be unique")
}

pub fn too_many_names(names: usize, inputs: usize) -> String {
    format!("{names} --name given for {inputs} input(s): give at most one per input")
}

pub fn output_is_input(out: &Path) -> String {
    format!(
        "the output {} is also an input: write the merge to another file",
        out.display()
    )
}

pub fn bad_key_value(flag: &str, spec: &str, example: &str) -> String {
    format!("{flag} {spec}: expected KEY:VALUE, e.g. {example}")
}

pub fn not_a_count(flag: &str, spec: &str, value: &str) -> String {
    format!("{flag} {spec}: {value:?} is not a positive whole number")
}

pub fn unknown_key(flag: &str, spec: &str, key: &str, known: &str) -> String {
    format!("{flag} {spec}: unknown key {key:?}; use {known}")
}

pub fn whole_seconds(flag: &str, spec: &str) -> String {
    format!("{flag} {spec}: the interval must be a whole number of seconds (at least 1)")
}

pub fn bad_command_spec(s: &str) -> String {
    format!("expected NAME=COMMAND, e.g. web='ip netns exec web tcpdump -U -i any -w -'; got {s:?}")
}

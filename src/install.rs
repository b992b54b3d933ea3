//! What podcap-merge installs besides its binary: the shell completions and the man page
//! (generated from the same clap definitions as `--help`), the link that makes it a Wireshark
//! extcap program, and the link that makes it the kubectl plugin `kubectl podcap`.

use crate::flags::defs;
use crate::flags::NAME;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The file name of the link in Wireshark's extcap directory.
pub const EXTCAP_LINK: &str = "podcap-merge";
/// The file name kubectl looks for on PATH to run `kubectl podcap`.
pub const KUBECTL_PLUGIN: &str = "kubectl-podcap";

/// `podcap-merge completions SHELL`: the completion script.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) -> io::Result<()> {
    let mut cmd = defs::command(NAME);
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, NAME, &mut script);
    if shell == clap_complete::Shell::Bash {
        // clap_complete 4.6 names a subcommand's case `podcap__subcmd__merge__subcmd__X`
        // (the '-' of our own name taken for a separator) but dispatches to
        // `podcap__merge__subcmd__X`, so no subcommand's options would complete
        let fixed =
            String::from_utf8_lossy(&script).replace("podcap__subcmd__merge", "podcap__merge");
        script = fixed.into_bytes();
    }
    out.write_all(&script)
}

/// `podcap-merge man`: the man page (section 1, roff): clap_mangen's sections from the same
/// definitions as `--help`, and the examples as an EXAMPLES section of their own (each
/// command on its own unfilled line).
pub fn man(out: &mut dyn Write) -> io::Result<()> {
    let page = clap_mangen::Man::new(defs::command(NAME)).manual("podcap-merge manual");
    page.render_title(out)?;
    page.render_name_section(out)?;
    page.render_synopsis_section(out)?;
    page.render_description_section(out)?;
    page.render_options_section(out)?;
    page.render_subcommands_section(out)?;
    let mut r = roff::Roff::new();
    r.control("SH", ["EXAMPLES"]);
    for (what, cmd) in defs::example_list(NAME) {
        r.control("PP", []);
        r.text([roff::roman(what)]);
        r.control("RS", ["4"]);
        r.control("nf", []);
        r.text([roff::bold(cmd)]);
        r.control("fi", []);
        r.control("RE", []);
    }
    r.to_writer(out)?;
    page.render_version_section(out)
}

/// The man pages of the subcommands (`podcap-merge-merge.1`, `podcap-merge-extcap-install.1`…),
/// which the SUBCOMMANDS sections name, as (file name, page).
pub fn subcommand_pages() -> io::Result<Vec<(String, Vec<u8>)>> {
    fn walk(cmd: &clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let page = clap_mangen::Man::new(sub.clone()).manual("podcap-merge manual");
            let mut bytes = Vec::new();
            page.render(&mut bytes)?;
            pages.push((page.get_filename(), bytes));
            walk(sub, pages)?;
        }
        Ok(())
    }
    let mut cmd = defs::command(NAME);
    cmd.build();
    let mut pages = Vec::new();
    walk(&cmd, &mut pages)?;
    Ok(pages)
}

/// Why an install step failed, with what to do about it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InstallError(pub String);

/// Wireshark's extcap directory, as `tshark -G folders` reports it: the personal one when this
/// Wireshark has one (4.2 and later), else the global one (4.0 has only that).
pub fn wireshark_extcap_dir() -> Result<PathBuf, InstallError> {
    let out = Command::new("tshark")
        .args(["-G", "folders"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| {
            InstallError(format!(
                "cannot run tshark to find Wireshark's extcap directory ({e}): install tshark \
                 (Debian: apt-get install tshark), or give the directory with --dir DIR \
                 (Wireshark shows it under Help → About Wireshark → Folders → Extcap path)"
            ))
        })?;
    extcap_dir_from_folders(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| {
        InstallError(
            "`tshark -G folders` names no extcap directory: give it with --dir DIR (Wireshark \
             shows it under Help → About Wireshark → Folders → Extcap path)"
                .into(),
        )
    })
}

/// Reads `tshark -G folders` output: "Personal Extcap path:" if present, else "Extcap path:".
fn extcap_dir_from_folders(text: &str) -> Option<PathBuf> {
    let field = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key && !v.trim().is_empty()).then(|| PathBuf::from(v.trim()))
        })
    };
    field("Personal Extcap path").or_else(|| field("Extcap path"))
}

/// This program, as a path a link can point to.
fn this_program() -> Result<PathBuf, InstallError> {
    std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| InstallError(format!("cannot find this program's own path: {e}")))
}

/// Points `link` at this program, replacing an older link (never a file that is not a link).
fn place_link(link: &Path) -> Result<(), InstallError> {
    let target = this_program()?;
    if let Some(dir) = link.parent() {
        std::fs::create_dir_all(dir).map_err(|e| write_error(dir, &e))?;
    }
    match std::fs::symlink_metadata(link) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::remove_file(link).map_err(|e| write_error(link, &e))?
        }
        Ok(_) => {
            return Err(InstallError(format!(
                "{} exists and is not a link: remove it, or choose another directory",
                link.display()
            )))
        }
        Err(_) => {}
    }
    std::os::unix::fs::symlink(&target, link).map_err(|e| write_error(link, &e))
}

fn write_error(path: &Path, e: &io::Error) -> InstallError {
    let hint = if e.kind() == io::ErrorKind::PermissionDenied {
        " (run it with sudo, or choose a directory you may write to)"
    } else {
        ""
    };
    InstallError(format!("cannot write {}: {e}{hint}", path.display()))
}

/// `podcap-merge extcap install [--dir DIR]`: links this program into the extcap directory;
/// returns the link's path.
pub fn extcap_install(dir: Option<PathBuf>) -> Result<PathBuf, InstallError> {
    let dir = match dir {
        Some(d) => d,
        None => wireshark_extcap_dir()?,
    };
    let link = dir.join(EXTCAP_LINK);
    place_link(&link)?;
    Ok(link)
}

/// `podcap-merge extcap uninstall [--dir DIR]`: removes the link; returns its path, or None
/// when there was none.
pub fn extcap_uninstall(dir: Option<PathBuf>) -> Result<Option<PathBuf>, InstallError> {
    let dir = match dir {
        Some(d) => d,
        None => wireshark_extcap_dir()?,
    };
    let link = dir.join(EXTCAP_LINK);
    match std::fs::symlink_metadata(&link) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::remove_file(&link).map_err(|e| write_error(&link, &e))?;
            Ok(Some(link))
        }
        Ok(_) => Err(InstallError(format!(
            "{} is not a link placed by `extcap install`; left as it is",
            link.display()
        ))),
        Err(_) => Ok(None),
    }
}

/// Where Wireshark's extcap directory lies below an installation prefix: the directory tshark
/// reports, with its own prefix (/usr, /usr/local, /opt/homebrew) replaced by `prefix`
/// (/usr/lib/x86_64-linux-gnu/wireshark/extcap → PREFIX/lib/x86_64-linux-gnu/wireshark/extcap);
/// PREFIX/lib/wireshark/extcap, Wireshark's own default layout, when tshark is absent or
/// names a directory under no known prefix.
fn extcap_dir_under(prefix: &Path, reported: Option<&Path>) -> PathBuf {
    const PREFIXES: [&str; 3] = ["/usr/local", "/opt/homebrew", "/usr"];
    reported
        .and_then(|r| {
            PREFIXES
                .iter()
                .find_map(|p| r.strip_prefix(p).ok())
                .map(|rest| prefix.join(rest))
        })
        .unwrap_or_else(|| prefix.join("lib/wireshark/extcap"))
}

/// What `install-extras` wrote, for the report, and what the user should know about it.
pub struct Installed {
    pub files: Vec<(&'static str, PathBuf)>,
    pub notes: Vec<String>,
}

/// `podcap-merge install-extras --prefix DIR`: each file where that kind of file belongs
/// under the prefix.
pub fn install_extras(prefix: &Path) -> Result<Installed, InstallError> {
    let mut done = Vec::new();
    let write =
        |rel: &str, what: &'static str, done: &mut Vec<(&'static str, PathBuf)>, bytes: Vec<u8>| {
            let path = prefix.join(rel);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| write_error(dir, &e))?;
            }
            std::fs::write(&path, bytes).map_err(|e| write_error(&path, &e))?;
            done.push((what, path));
            Ok::<(), InstallError>(())
        };
    for (shell, rel, what) in [
        (
            clap_complete::Shell::Bash,
            "share/bash-completion/completions/podcap-merge",
            "bash completion",
        ),
        (
            clap_complete::Shell::Zsh,
            "share/zsh/site-functions/_podcap-merge",
            "zsh completion",
        ),
        (
            clap_complete::Shell::Fish,
            "share/fish/vendor_completions.d/podcap-merge.fish",
            "fish completion",
        ),
    ] {
        let mut buf = Vec::new();
        completions(shell, &mut buf)
            .map_err(|e| InstallError(format!("cannot generate the completions: {e}")))?;
        write(rel, what, &mut done, buf)?;
    }
    let mut page = Vec::new();
    man(&mut page).map_err(|e| InstallError(format!("cannot render the man page: {e}")))?;
    write("share/man/man1/podcap-merge.1", "man page", &mut done, page)?;
    let subs = subcommand_pages()
        .map_err(|e| InstallError(format!("cannot render the man pages: {e}")))?;
    for (file, bytes) in subs {
        write(
            &format!("share/man/man1/{file}"),
            "man page",
            &mut done,
            bytes,
        )?;
    }
    let reported = wireshark_extcap_dir().ok();
    let extcap_dir = extcap_dir_under(prefix, reported.as_deref());
    let mut notes = Vec::new();
    if let Some(r) = reported.filter(|r| *r != extcap_dir) {
        notes.push(format!(
            "this Wireshark reads extcap programs from {} only: link it there with `{NAME} \
             extcap install` (as root for a system directory)",
            r.display()
        ));
    }
    let extcap = extcap_dir.join(EXTCAP_LINK);
    place_link(&extcap)?;
    done.push(("Wireshark extcap link", extcap));
    let plugin = prefix.join("bin").join(KUBECTL_PLUGIN);
    place_link(&plugin)?;
    done.push(("kubectl plugin link", plugin));
    Ok(Installed { files: done, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extcap_directory_is_read_from_tsharks_folders() {
        let v40 = "Temp:                \t/tmp\nGlobal Plugins:      \t/usr/lib/x86_64-linux-gnu/wireshark/plugins/4.0\nExtcap path:         \t/usr/lib/x86_64-linux-gnu/wireshark/extcap\n";
        assert_eq!(
            extcap_dir_from_folders(v40),
            Some(PathBuf::from("/usr/lib/x86_64-linux-gnu/wireshark/extcap"))
        );
        let v42 = "Personal Extcap path:\t/home/u/.local/lib/wireshark/extcap\nGlobal Extcap path:  \t/usr/lib/wireshark/extcap\n";
        assert_eq!(
            extcap_dir_from_folders(v42),
            Some(PathBuf::from("/home/u/.local/lib/wireshark/extcap"))
        );
        assert_eq!(extcap_dir_from_folders("Temp: /tmp\n"), None);
    }

    #[test]
    fn the_extcap_directory_moves_under_the_prefix() {
        let p = Path::new("/stage");
        let deb = Path::new("/usr/lib/x86_64-linux-gnu/wireshark/extcap");
        assert_eq!(
            extcap_dir_under(p, Some(deb)),
            PathBuf::from("/stage/lib/x86_64-linux-gnu/wireshark/extcap")
        );
        let local = Path::new("/usr/local/lib/wireshark/extcap");
        assert_eq!(
            extcap_dir_under(p, Some(local)),
            PathBuf::from("/stage/lib/wireshark/extcap")
        );
        assert_eq!(
            extcap_dir_under(p, Some(Path::new("/Applications/Wireshark.app/x"))),
            PathBuf::from("/stage/lib/wireshark/extcap")
        );
        assert_eq!(
            extcap_dir_under(p, None),
            PathBuf::from("/stage/lib/wireshark/extcap")
        );
    }
}

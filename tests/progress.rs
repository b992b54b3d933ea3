//! What a user sees on stderr: progress rows under a real pseudo-terminal (`script`) 80
//! columns wide (a header, rows that fit, a rate that is the real rate, nothing stale above the
//! summary), and a summary that says why the run stopped.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A command that writes a pcap at a steady `bytes_per_sec` (packets of 500 bytes every
/// 50 ms: 10 000 B/s) for `secs` seconds.
fn steady_source(secs: f64) -> String {
    format!(
        "python3 -c 'import sys,struct,time\n\
         o=sys.stdout.buffer\n\
         o.write(struct.pack(\"<IHHiIII\",0xa1b2c3d4,2,4,0,0,65535,1)); o.flush()\n\
         t0=time.time(); n=0\n\
         while time.time()-t0<{secs}:\n\
         \x20 now=time.time(); o.write(struct.pack(\"<IIII\",int(now),int(now%1*1e6),500,500)+bytes(500)); o.flush(); n+=1\n\
         \x20 time.sleep(max(0,t0+n*0.05-time.time()))\n'"
    )
}

/// Every line a terminal of `cols` columns showed while replaying `raw` (a small emulator:
/// printable characters with auto-wrap, CR, LF, cursor up/down, erase line/below): each
/// version of a line is kept when it is erased, and the screen at the end.
fn screen_lines(raw: &str, cols: usize) -> Vec<String> {
    let mut screen: Vec<Vec<char>> = vec![Vec::new()];
    let mut shown = Vec::new();
    let (mut row, mut col) = (0usize, 0usize);
    let line = |screen: &Vec<Vec<char>>, r: usize| -> String {
        screen[r].iter().collect::<String>().trim_end().to_string()
    };
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        while screen.len() <= row + 1 {
            screen.push(Vec::new());
        }
        match c {
            '\x1b' => {
                if chars.peek() != Some(&'[') {
                    chars.next();
                    continue;
                }
                chars.next();
                let mut param = String::new();
                let mut fin = ' ';
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        fin = d;
                        break;
                    }
                    param.push(d);
                }
                let n: usize = param.parse().unwrap_or(1).max(1);
                match fin {
                    'A' => row = row.saturating_sub(n),
                    'B' => row += n,
                    'K' | 'J' => {
                        let l = line(&screen, row);
                        if !l.is_empty() {
                            shown.push(l);
                        }
                        screen[row].clear();
                        if fin == 'J' {
                            for r in screen.iter_mut().skip(row + 1) {
                                r.clear();
                            }
                        }
                    }
                    _ => {}
                }
            }
            '\r' => col = 0,
            '\n' => {
                row += 1;
                col = 0;
            }
            c => {
                if col >= cols {
                    row += 1;
                    col = 0;
                    while screen.len() <= row {
                        screen.push(Vec::new());
                    }
                }
                let r = &mut screen[row];
                while r.len() <= col {
                    r.push(' ');
                }
                r[col] = c;
                col += 1;
            }
        }
    }
    for r in 0..screen.len() {
        let l = line(&screen, r);
        if !l.is_empty() {
            shown.push(l);
        }
    }
    shown
}

/// `12.3 KB/s` → bytes per second.
fn parse_rate(cell: &str) -> Option<f64> {
    let cell = cell.strip_suffix("/s")?;
    let (v, unit) = cell.rsplit_once(' ')?;
    let v: f64 = v.trim().parse().ok()?;
    let mult = match unit {
        "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return None,
    };
    Some(v * mult)
}

#[test]
fn progress_rows_fit_80_columns_with_a_header_and_the_real_rate() {
    let dir = tmpdir();
    let out = dir.path().join("o.pcapng");
    let cmd = format!(
        "stty cols 80 rows 30; {} --cmd \"steady={}\" --cmd \"a-source-with-a-name-far-too-long-for-a-row=sleep 4.5; cat /dev/null\" -w {}",
        env!("CARGO_BIN_EXE_podcap-merge"),
        steady_source(5.0).replace('"', "\\\""),
        out.display()
    );
    let res = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("run script (package bsdutils)");
    let raw = String::from_utf8_lossy(&res.stdout);
    let lines = screen_lines(&raw, 80);
    let transcript = lines.join("\n");
    // every row fits the terminal: a row that wrapped would leave its last columns (drops,
    // late) on the next line
    let rows: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(" steady ") || l.contains("far-too-long"))
        .filter(|l| !l.starts_with("podcap-merge") && !l.starts_with(' '))
        .collect();
    assert!(!rows.is_empty(), "no rows drawn:\n{transcript}");
    for l in &rows {
        let cells: Vec<&str> = l.split_whitespace().collect();
        assert!(
            cells.len() >= 9
                && cells[cells.len() - 2].parse::<u64>().is_ok()
                && cells
                    .last()
                    .is_some_and(|c| *c == "-" || c.ends_with("ms") || c.ends_with('s')),
            "a row cut by the terminal's width: {l:?}\n{transcript}"
        );
    }
    // a header row, and rows for both sources (the long name cut to fit)
    assert!(
        lines.iter().any(|l| l.contains("SOURCE")
            && l.contains("RATE")
            && l.trim_end().ends_with("LATE    LAG")),
        "no header row:\n{transcript}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("…") && l.contains("long-for-a-row")),
        "the long name is not cut to fit:\n{transcript}"
    );
    // the rate: 500-byte packets every 50 ms are 10 000 B/s
    let rates: Vec<f64> = lines
        .iter()
        .filter(|l| l.contains(" steady ") && l.contains("capturing"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            let i = cells.iter().position(|c| c.ends_with("/s"))?;
            parse_rate(&format!("{} {}", cells[i - 1], cells[i]))
        })
        .collect();
    assert!(
        rates.len() >= 6,
        "too few frames with a rate: {rates:?}\n{transcript}"
    );
    for r in &rates[2..] {
        assert!(
            (8_000.0..=12_000.0).contains(r),
            "rate {r} B/s is not within 20 % of 10 000 B/s: {rates:?}"
        );
    }
    // nothing stale between the summary and the end; the summary has its columns
    let head = lines
        .iter()
        .position(|l| l.starts_with("podcap-merge: 2 source(s)"))
        .unwrap_or_else(|| panic!("no summary:\n{transcript}"));
    let after = &lines[head..];
    assert!(
        !after.iter().any(|l| l.contains("capturing")),
        "stale rows after the summary:\n{transcript}"
    );
    // (the summary is plain text: the terminal wraps it where it must)
    let summary = after.join("");
    for column in [
        "SOURCE",
        "PACKETS",
        "BYTES",
        "OOO",
        "LATE",
        "DROPPED",
        "NOT CAPTURED",
        "END",
    ] {
        assert!(summary.contains(column), "{column} missing:\n{transcript}");
    }
    capinfos_clean(&out);
}

#[test]
fn an_interrupted_run_says_so_in_its_summary() {
    let dir = tmpdir();
    let out = dir.path().join("o.pcapng");
    let child = bin()
        .args(["--cmd"])
        .arg(format!("steady={}", steady_source(20.0)))
        .arg("-w")
        .arg(&out)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let res = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{err}");
    assert!(
        err.contains("podcap-merge: stopping: finishing what the sources still send"),
        "{err}"
    );
    assert!(
        err.contains("stopped: interrupted by SIGINT (Ctrl-C)"),
        "{err}"
    );
}

#[test]
fn a_reader_that_went_away_is_in_the_summary_with_what_it_was_handed() {
    let dir = tmpdir();
    let src = dir.path().join("big.pcap");
    let recs: Vec<_> = (0..20_000u32)
        .map(|i| {
            (
                1_700_000_000 + i / 1000,
                (i % 1000) * 1000,
                frame(590, i),
                590,
            )
        })
        .collect();
    std::fs::write(&src, pcap_file(false, false, 1, &recs)).expect("write capture");
    // `| head -c 20000`: the reader leaves after a few packets
    let res = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} --cmd 'a=cat {}; sleep 2' | head -c 20000 >/dev/null",
            env!("CARGO_BIN_EXE_podcap-merge"),
            src.display()
        ))
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&res.stderr);
    let line = err
        .lines()
        .find(|l| l.contains("the reader of the output went away after"))
        .unwrap_or_else(|| panic!("the summary does not say the reader went away:\n{err}"));
    // "after D of the N packets were handed to it": D well below N
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "after").expect("after");
    let handed: u64 = words[at + 1].parse().expect("a count");
    let of: u64 = words[at + 4].parse().expect("a total");
    assert!(handed < of, "{line}");
    assert!(
        handed < 200,
        "more packets claimed delivered than 20 000 bytes hold: {line}"
    );
}

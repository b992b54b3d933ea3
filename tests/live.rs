//! Live capture end to end: network namespaces with real HTTP traffic, real `tcpdump -U -w -` in
//! each as a `--cmd` source, output read live by tshark and written to files; a consumer that
//! goes away; SIGINT; rotation; a slow consumer. Needs root (CI runs as root).

mod common;

use common::*;
use pcap_parser::pcapng::Block;
use pcap_parser::{PcapBlockOwned, PcapNGSlice};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tcpdumps_in(net: &NetPair) -> Vec<String> {
    net.pids()
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .map(|c| c.trim() == "tcpdump")
                .unwrap_or(false)
        })
        .collect()
}

fn tcpdump_cmd(net: &NetPair, ns: &str, iface: &str) -> String {
    let _ = net;
    format!("ip netns exec {ns} tcpdump -U --immediate-mode -n -i {iface} -w -")
}

/// Blocks of a pcapng file, as (kind, interface name or id) in file order.
fn block_kinds(path: &Path) -> Vec<(String, String)> {
    let data = std::fs::read(path).unwrap();
    let mut v = Vec::new();
    for b in PcapNGSlice::from_slice(&data).unwrap() {
        let b = b.unwrap();
        match b {
            PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                let name = idb
                    .options
                    .iter()
                    .find(|o| o.code.0 == 2)
                    .map(|o| String::from_utf8_lossy(&o.value[..o.len as usize]).into_owned())
                    .unwrap_or_default();
                v.push(("IDB".into(), name));
            }
            PcapBlockOwned::NG(Block::EnhancedPacket(e)) => {
                v.push(("EPB".into(), e.if_id.to_string()))
            }
            PcapBlockOwned::NG(Block::InterfaceStatistics(s)) => {
                let drop = s
                    .options
                    .iter()
                    .find(|o| o.code.0 == 5)
                    .map(|o| u64::from_ne_bytes(o.value[..8].try_into().unwrap()).to_string())
                    .unwrap_or_else(|| "none".into());
                v.push(("ISB".into(), format!("{}:{drop}", s.if_id)));
            }
            PcapBlockOwned::NG(Block::SectionHeader(_)) => v.push(("SHB".into(), String::new())),
            _ => {}
        }
    }
    v
}

#[test]
fn namespaces_with_real_traffic_merge_live_into_tshark_and_a_file() {
    let net = NetPair::new("l1");
    let (_srv, _cli) = net.http_traffic();
    let _lo = Bg::spawn(net.exec(&net.a, &["ping", "-i", "0.1", "127.0.0.1"]));
    let dir = tmpdir();
    let p = |n: &str| dir.path().join(n).display().to_string();
    let script = format!(
        "set -o pipefail; {bin} -q --reorder-window 300ms --duration 4 \
           --cmd web='{web} | tee -i {web_ref}' \
           --cmd client='{cli} | tee -i {cli_ref}' \
           --cmd late='sleep 1.5; {late} | tee -i {late_ref}' \
           --cmd broken='echo this is not a capture' \
         | tee {out} | tshark -l -i - -T fields -e frame.interface_name -e frame.time_epoch > {live}; \
         echo ${{PIPESTATUS[0]}} > {rc}",
        bin = env!("CARGO_BIN_EXE_podcap-merge"),
        web = tcpdump_cmd(&net, &net.b, "any"),
        cli = tcpdump_cmd(&net, &net.a, &format!("{}-v", net.a)),
        late = tcpdump_cmd(&net, &net.a, "lo"),
        web_ref = p("web.pcap"),
        cli_ref = p("client.pcap"),
        late_ref = p("late.pcap"),
        out = p("out.pcapng"),
        live = p("live.txt"),
        rc = p("rc"),
    );
    let res = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    let rc = std::fs::read_to_string(p("rc")).unwrap();
    assert_eq!(
        rc.trim(),
        "1",
        "a broken source makes the exit status 1: {stderr}"
    );
    assert!(
        stderr.contains("command `echo this is not a capture`"),
        "{stderr}"
    );
    assert!(stderr.contains("not a capture file"), "{stderr}");

    // what tshark read live from the pipe equals the file
    let out = Path::new(&p("out.pcapng")).to_path_buf();
    let file = tshark_packets(&out);
    let live_text = std::fs::read_to_string(p("live.txt")).unwrap();
    let live: Vec<(String, u64)> = live_text
        .lines()
        .map(|l| {
            let (n, t) = l.split_once('\t').unwrap();
            (n.to_string(), parse_epoch(t).unwrap())
        })
        .collect();
    assert_eq!(
        live,
        file.iter()
            .map(|f| (f.iface_name.clone(), f.ts.unwrap()))
            .collect::<Vec<_>>()
    );
    // chronological
    let ts: Vec<u64> = file.iter().map(|f| f.ts.unwrap()).collect();
    let disorder: Vec<_> = file
        .windows(2)
        .filter(|w| w[0].ts > w[1].ts)
        .map(|w| (&w[0].iface_name, w[0].ts, &w[1].iface_name, w[1].ts))
        .collect();
    assert!(
        disorder.is_empty(),
        "output is not in time order: {disorder:?}"
    );
    let _ = ts;
    // every packet of every namespace, on its own interface
    for (name, reference) in [
        ("web", "web.pcap"),
        ("client", "client.pcap"),
        ("late", "late.pcap"),
    ] {
        let want: Vec<(Option<u64>, String)> = tshark_packets(Path::new(&p(reference)))
            .into_iter()
            .map(|x| (x.ts, x.bytes))
            .collect();
        let got: Vec<(Option<u64>, String)> = file
            .iter()
            .filter(|f| f.iface_name == name)
            .map(|f| (f.ts, f.bytes.clone()))
            .collect();
        assert!(
            want.len() >= 10,
            "{name}: only {} packets captured",
            want.len()
        );
        // (a capture's own slightly out-of-order packets are put in order: compare as sets)
        let (mut got, mut want) = (got, want);
        got.sort();
        want.sort();
        assert_eq!(got, want, "{name}");
    }
    // the late source's interface appears mid-stream, before its first packet
    let blocks = block_kinds(&out);
    let late_idb = blocks
        .iter()
        .position(|b| b.0 == "IDB" && b.1 == "late")
        .unwrap();
    assert!(blocks[..late_idb].iter().filter(|b| b.0 == "EPB").count() > 5);
    // one ISB per interface at the end, with tcpdump's drop count
    let isbs: Vec<_> = blocks.iter().filter(|b| b.0 == "ISB").collect();
    assert_eq!(isbs.len(), 3, "{isbs:?}");
    assert!(isbs.iter().all(|b| !b.1.ends_with(":none")), "{isbs:?}");
    assert!(blocks.last().unwrap().0 == "ISB");
    capinfos_clean(&out);
    assert!(wait_until(Duration::from_secs(2), || tcpdumps_in(&net).is_empty()));
}

fn exits_within(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > end {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn spawn_capture(net: &NetPair, extra: &[&str]) -> std::process::Child {
    bin()
        .args(["-q", "--cmd"])
        .arg(format!("web={}", tcpdump_cmd(net, &net.b, "any")))
        .arg("--cmd")
        .arg(format!(
            "client={}",
            tcpdump_cmd(net, &net.a, &format!("{}-v", net.a))
        ))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `| head -c BYTES`: after the reader leaves, podcap-merge exits 0 within a second.
fn read_then_close(ours: &mut std::process::Child, bytes: usize) -> Instant {
    let head = Command::new("head")
        .args(["-c", &bytes.to_string()])
        .stdin(ours.stdout.take().unwrap())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(head.success());
    let closed = Instant::now();
    let status = exits_within(ours, Duration::from_secs(1))
        .expect("podcap-merge still running 1 s after its reader went away");
    assert!(status.success(), "{status}");
    closed
}

#[test]
fn consumer_closing_early_ends_everything_within_a_second() {
    let net = NetPair::new("l2");
    let (_srv, _cli) = net.http_traffic();
    let mut ours = spawn_capture(&net, &[]);
    let closed = read_then_close(&mut ours, 10000);
    let stderr = std::io::read_to_string(ours.stderr.take().unwrap()).unwrap();
    assert!(!stderr.contains("Broken pipe"), "no error spew: {stderr}");
    assert!(
        wait_until(Duration::from_secs(1), || tcpdumps_in(&net).is_empty()),
        "tcpdump still running {:?} after the reader left",
        closed.elapsed()
    );
}

#[test]
fn consumer_closing_while_no_packet_flows_is_noticed() {
    let net = NetPair::new("l3"); // no traffic at all
    let mut ours = spawn_capture(&net, &[]);
    // the section header arrives at once; then nothing flows: the pipe itself must be watched
    read_then_close(&mut ours, 20);
    assert!(wait_until(Duration::from_secs(1), || tcpdumps_in(&net).is_empty()));
}

#[test]
fn sigint_mid_capture_leaves_a_valid_file_with_one_isb_per_interface() {
    let net = NetPair::new("l4");
    let (_srv, _cli) = net.http_traffic();
    let dir = tmpdir();
    let out = dir.path().join("cap.pcapng");
    let mut ours = spawn_capture(&net, &["-w", out.to_str().unwrap()]);
    assert!(wait_until(Duration::from_secs(5), || tcpdumps_in(&net)
        .len()
        == 2));
    std::thread::sleep(Duration::from_millis(1500));
    unsafe { libc::kill(ours.id() as i32, libc::SIGINT) };
    let status = exits_within(&mut ours, Duration::from_secs(5)).expect("exit after SIGINT");
    assert!(status.success(), "{status}");
    let blocks = block_kinds(&out);
    let idbs = blocks.iter().filter(|b| b.0 == "IDB").count();
    let isbs: Vec<_> = blocks.iter().filter(|b| b.0 == "ISB").collect();
    assert_eq!(idbs, 2);
    assert_eq!(isbs.len(), 2, "{isbs:?}");
    assert!(
        isbs.iter().all(|b| !b.1.ends_with(":none")),
        "drop counts from tcpdump's stderr: {isbs:?}"
    );
    assert!(tshark_packets(&out).len() > 10);
    capinfos_clean(&out);
    assert!(wait_until(Duration::from_secs(1), || tcpdumps_in(&net).is_empty()));
}

/// A pcap stream of `n` packets of mixed sizes.
fn big_pcap(path: &Path, n: u32, start: u32) {
    let recs: Vec<_> = (0..n)
        .map(|i| {
            let len = [60usize, 1514, 590, 66][i as usize % 4];
            (
                start + i / 1000,
                (i % 1000) * 1000,
                frame(len, i),
                len as u32,
            )
        })
        .collect();
    std::fs::write(path, pcap_file(false, false, 1, &recs)).unwrap();
}

fn ring_files(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    v.sort();
    v
}

#[test]
fn ring_rotates_by_size_keeps_every_packet_and_respects_files() {
    let dir = tmpdir();
    let a = dir.path().join("a.pcap");
    let b = dir.path().join("b.pcap");
    big_pcap(&a, 3000, 1_700_000_000);
    big_pcap(&b, 2000, 1_700_000_000);
    // every packet kept: no files limit
    let run = |extra: &[&str]| {
        run_ok(
            bin()
                .args(["-q", "--cmd"])
                .arg(format!("a=cat {}", a.display()))
                .arg("--cmd")
                .arg(format!("b=cat {}", b.display()))
                .args(extra),
        );
    };
    let prefix = dir.path().join("all.pcapng");
    run(&["-w", prefix.to_str().unwrap(), "-b", "filesize:500"]);
    let files = ring_files(dir.path(), "all_");
    assert!(files.len() >= 5, "{} files", files.len());
    let mut total = 0;
    for (i, f) in files.iter().enumerate() {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        // dumpcap's names: PREFIX_00001_YYYYmmddHHMMSS.pcapng
        assert_eq!(&name[..10], format!("all_{:05}_", i + 1), "{name}");
        assert!(name.ends_with(".pcapng") && name.len() == "all_00001_20260101120000.pcapng".len());
        let pk = tshark_packets(f);
        assert!(!pk.is_empty(), "{name} is empty");
        total += pk.len();
        let blocks = block_kinds(f);
        assert_eq!(blocks[0].0, "SHB");
        let idbs = blocks.iter().filter(|b| b.0 == "IDB").count();
        assert!(idbs >= 1);
        assert_eq!(
            blocks.iter().filter(|b| b.0 == "ISB").count(),
            idbs,
            "{name}"
        );
        if i + 1 < files.len() {
            let size = std::fs::metadata(f).unwrap().len();
            assert!((500_000..520_000).contains(&size), "{name}: {size} bytes");
        }
        capinfos_clean(f);
    }
    assert_eq!(total, 5000, "the sum over the files is every packet");

    // files:3 keeps the newest three
    let prefix = dir.path().join("ring.pcapng");
    run(&[
        "-w",
        prefix.to_str().unwrap(),
        "-b",
        "filesize:300",
        "-b",
        "files:3",
    ]);
    let kept = ring_files(dir.path(), "ring_");
    assert_eq!(kept.len(), 3, "{kept:?}");
    let last = kept
        .last()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let n: usize = last[5..10].parse().unwrap();
    assert!(n > 3, "older files were deleted, newest kept: {kept:?}");

    // packets:N with gzip: tshark reads .pcapng.gz
    let prefix = dir.path().join("z.pcapng.gz");
    run(&["-w", prefix.to_str().unwrap(), "-b", "packets:1500"]);
    let gz = ring_files(dir.path(), "z_");
    assert_eq!(gz.len(), 4);
    let counts: Vec<usize> = gz.iter().map(|f| tshark_packets(f).len()).collect();
    assert_eq!(counts, vec![1500, 1500, 1500, 500]);
    assert!(gz
        .iter()
        .all(|f| f.to_string_lossy().ends_with(".pcapng.gz")));
}

#[test]
fn ring_rotates_by_duration_during_live_capture() {
    let net = NetPair::new("l5");
    let (_srv, _cli) = net.http_traffic();
    let dir = tmpdir();
    let prefix = dir.path().join("t.pcapng");
    run_ok(
        bin()
            .args(["-q", "--duration", "3.5", "-b", "duration:1", "-w"])
            .arg(&prefix)
            .arg("--cmd")
            .arg(format!("web={}", tcpdump_cmd(&net, &net.b, "any"))),
    );
    let files = ring_files(dir.path(), "t_");
    assert!((3..=5).contains(&files.len()), "{files:?}");
    let mut names = BTreeSet::new();
    for f in &files {
        for p in tshark_packets(f) {
            names.insert(p.iface_name);
        }
        capinfos_clean(f);
    }
    assert_eq!(names, BTreeSet::from(["web".to_string()]));
}

#[test]
fn slow_consumer_keeps_memory_bounded_and_slows_the_sources() {
    let dir = tmpdir();
    let mut cmds = Vec::new();
    for k in 0..4 {
        let f = dir.path().join(format!("s{k}.pcap"));
        big_pcap(&f, 40_000, 1_700_000_000); // ~22 MB each
        cmds.push(format!("s{k}=cat {}", f.display()));
    }
    let mut c = bin();
    c.arg("-q");
    for cmd in &cmds {
        c.arg("--cmd").arg(cmd);
    }
    let mut ours = c
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut pipe = ours.stdout.take().unwrap();
    // read ~10 MB/s for 3 s, sampling our peak RSS
    let mut peak = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let start = Instant::now();
    let mut read = 0usize;
    while start.elapsed() < Duration::from_secs(3) {
        use std::io::Read;
        read += pipe.read(&mut buf).unwrap();
        std::thread::sleep(Duration::from_millis(6));
        peak = peak.max(peak_rss_kib(ours.id()).unwrap_or(0));
    }
    drop(pipe);
    let status =
        exits_within(&mut ours, Duration::from_secs(2)).expect("exits when the reader leaves");
    assert!(status.success());
    assert!(read > 5_000_000, "read only {read} bytes");
    // four sources × 1 MiB budget + buffers: stated bound 48 MiB
    assert!(peak < 48 * 1024, "peak RSS {peak} KiB with a slow consumer");
    eprintln!("slow consumer: read {read} bytes in 3 s, peak RSS {peak} KiB");
}

#[test]
fn replayed_old_captures_merge_in_order_through_the_live_rule() {
    let dir = tmpdir();
    let mut c = bin();
    c.arg("-q");
    for k in 0..4u32 {
        let f = dir.path().join(format!("r{k}.pcap"));
        // interleaved, years-old timestamps: the live rule must not release on timestamps
        let recs: Vec<_> = (0..3000u32)
            .map(|i| {
                (
                    1_500_000_000,
                    i * 40 + k * 10,
                    frame(60 + (i as usize % 900), i),
                    60 + i % 900,
                )
            })
            .collect();
        std::fs::write(&f, pcap_file(k % 2 == 1, false, 1, &recs)).unwrap();
        c.arg("--cmd").arg(format!("r{k}=cat {}", f.display()));
    }
    let out = dir.path().join("replay.pcapng");
    let res = c.arg("-w").arg(&out).output().unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let pk = tshark_packets(&out);
    assert_eq!(pk.len(), 12_000);
    assert!(
        pk.windows(2).all(|w| w[0].ts <= w[1].ts),
        "replay not in time order"
    );
}

#[test]
fn a_source_dying_mid_block_is_named_and_the_others_complete() {
    let dir = tmpdir();
    let good = dir.path().join("good.pcap");
    let cut = dir.path().join("cut.pcap");
    big_pcap(&good, 2000, 1_700_000_000);
    big_pcap(&cut, 2000, 1_700_000_000);
    let out = dir.path().join("o.pcapng");
    let res = bin()
        .args(["-q", "--cmd"])
        .arg(format!("good=cat {}", good.display()))
        .arg("--cmd")
        .arg(format!("cut=head -c 100003 {}", cut.display()))
        .arg("-w")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("head -c 100003"), "{stderr}");
    assert!(stderr.contains("truncated"), "{stderr}");
    let pk = tshark_packets(&out);
    assert_eq!(pk.iter().filter(|p| p.iface_name == "good").count(), 2000);
    assert!(pk.iter().filter(|p| p.iface_name == "cut").count() > 50);
    capinfos_clean(&out);
}

#[test]
fn a_disk_that_fills_during_rotation_gives_a_clear_error_and_valid_closed_files() {
    let dir = tmpdir();
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "this test needs root to mount a small tmpfs"
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(small.clone());
    let src = dir.path().join("src.pcap");
    big_pcap(&src, 8000, 1_700_000_000); // ~4.4 MB: more than the disk holds
    let res = bin()
        .args(["--cmd"])
        .arg(format!("a=cat {}", src.display()))
        .arg("-w")
        .arg(small.join("d.pcapng"))
        .args(["-b", "filesize:400"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    // the summary counts the output's failure and says it, not "0 error(s)"
    assert!(stderr.contains(", 1 error(s)\n"), "{stderr}");
    assert!(stderr.contains("  OUTPUT FAILED: writing "), "{stderr}");
    assert!(stderr.contains("closed before it are complete"), "{stderr}");
    let files = ring_files(&small, "d_");
    assert!(files.len() >= 3, "{files:?}");
    // every file but the one being written when the disk filled is complete and valid
    for f in &files[..files.len() - 1] {
        assert!(tshark_packets(f).len() > 100);
        capinfos_clean(f);
    }
}

#[test]
fn packets_reach_the_pipe_within_the_window_plus_tens_of_ms() {
    use podcap_format::{CaptureDecoder, Decoder as _, Record};
    use std::io::Read;
    let net = NetPair::new("l6");
    let _ping = Bg::spawn(net.exec(&net.a, &["ping", "-i", "0.05", &net.ip_b]));
    let mut ours = spawn_capture(&net, &["--reorder-window", "200ms", "--duration", "4"]);
    let mut pipe = ours.stdout.take().unwrap();
    let mut dec = CaptureDecoder::new();
    let mut buf = bytes::BytesMut::new();
    let mut lags = Vec::new();
    let mut chunk = vec![0u8; 65536];
    let start = Instant::now();
    loop {
        let n = pipe.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        buf.extend_from_slice(&chunk[..n]);
        while let Some(r) = dec.decode(&mut buf).unwrap() {
            if let Record::Packet(p) = r {
                if start.elapsed() > Duration::from_secs(1) {
                    lags.push((now - p.ts.unwrap()) / 1_000_000);
                }
            }
        }
    }
    assert!(ours.wait().unwrap().success());
    assert!(lags.len() > 20, "{} packets", lags.len());
    let max = *lags.iter().max().unwrap();
    assert!(
        max < 200 + 80,
        "packet-to-pipe lag up to {max} ms (window 200 ms): {lags:?}"
    );
    eprintln!("lag ms: max {max}, {} packets", lags.len());
}

#[test]
fn stdin_source_and_a_second_ctrl_c_forcing_the_stop() {
    let dir = tmpdir();
    let a = dir.path().join("a.pcap");
    let b = dir.path().join("b.pcap");
    big_pcap(&a, 500, 1_700_000_000);
    big_pcap(&b, 700, 1_700_000_000);
    let out = dir.path().join("o.pcapng");
    // a source that ignores SIGINT and SIGTERM and lingers after its data
    let mut ours = bin()
        .args(["-q", "--stdin", "piped", "--cmd"])
        .arg(format!(
            "stubborn=trap '' INT TERM; cat {}; sleep 31.7",
            b.display()
        ))
        .arg("-w")
        .arg(&out)
        .stdin(std::fs::File::open(&a).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    unsafe { libc::kill(ours.id() as i32, libc::SIGINT) };
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        ours.try_wait().unwrap().is_none(),
        "first Ctrl-C waits for the sources"
    );
    unsafe { libc::kill(ours.id() as i32, libc::SIGINT) };
    let status =
        exits_within(&mut ours, Duration::from_secs(1)).expect("second Ctrl-C forces the exit");
    assert!(status.success(), "{status}");
    let pk = tshark_packets(&out);
    assert_eq!(pk.iter().filter(|p| p.iface_name == "piped").count(), 500);
    assert_eq!(
        pk.iter().filter(|p| p.iface_name == "stubborn").count(),
        700
    );
    capinfos_clean(&out);
    let stubborn_left = wait_until(Duration::from_secs(1), || {
        Command::new("pgrep")
            .args(["-f", "sleep 31.7"])
            .output()
            .map(|o| o.stdout.is_empty())
            .unwrap_or(false)
    });
    assert!(stubborn_left, "the source's processes must be gone");
}

#[test]
fn progress_rows_on_a_terminal() {
    let dir = tmpdir();
    let a = dir.path().join("a.pcap");
    big_pcap(&a, 300, 1_700_000_000);
    let out = dir.path().join("o.pcapng");
    // `script` gives the command a terminal for stdin/stdout/stderr; we write to a file
    let cmd = format!(
        "{} --cmd 'slow=cat {}; sleep 1.2' -w {}",
        env!("CARGO_BIN_EXE_podcap-merge"),
        a.display(),
        out.display()
    );
    let res = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stdout)
    );
    let screen = String::from_utf8_lossy(&res.stdout);
    assert!(
        screen.contains("slow") && screen.contains("PACKETS"),
        "{screen}"
    );
    assert!(
        screen.contains("podcap-merge: 1 source(s), 300 packets"),
        "{screen}"
    );
}

#[test]
fn sigkill_of_podcap_merge_leaves_no_capture_running() {
    let net = NetPair::new("l7");
    let mut ours = spawn_capture(&net, &["-w", "/dev/null"]);
    assert!(wait_until(Duration::from_secs(5), || tcpdumps_in(&net)
        .len()
        == 2));
    ours.kill().unwrap(); // SIGKILL: no chance to clean up
    ours.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(1), || tcpdumps_in(&net).is_empty()),
        "tcpdump outlived a killed podcap-merge: {:?}",
        tcpdumps_in(&net)
    );
}

#[test]
fn count_stops_after_exactly_n_packets_and_keeps_tcpdumps_counts() {
    let net = NetPair::new("l8");
    let (_srv, _cli) = net.http_traffic();
    let dir = tmpdir();
    let out = dir.path().join("c.pcapng");
    let mut ours = spawn_capture(&net, &["-c", "25", "-w", out.to_str().unwrap()]);
    let status = exits_within(&mut ours, Duration::from_secs(15)).expect("stops after -c 25");
    assert!(status.success(), "{status}");
    assert_eq!(tshark_packets(&out).len(), 25);
    let blocks = block_kinds(&out);
    let isbs: Vec<_> = blocks.iter().filter(|b| b.0 == "ISB").collect();
    assert_eq!(isbs.len(), 2, "{isbs:?}");
    assert!(
        isbs.iter().all(|b| !b.1.ends_with(":none")),
        "tcpdump's counts: {isbs:?}"
    );
    assert!(wait_until(Duration::from_secs(1), || tcpdumps_in(&net).is_empty()));
}

#[test]
fn ring_rotates_on_wall_clock_intervals() {
    let dir = tmpdir();
    let a = dir.path().join("a.pcap");
    big_pcap(&a, 200, 1_700_000_000);
    let prefix = dir.path().join("iv.pcapng");
    run_ok(
        bin()
            .args(["-q", "-b", "interval:1", "--duration", "3.3", "-w"])
            .arg(&prefix)
            .arg("--cmd")
            .arg(format!("a=cat {}; sleep 5", a.display())),
    );
    let files = ring_files(dir.path(), "iv_");
    assert!((3..=5).contains(&files.len()), "{files:?}");
    let stamp = |p: &std::path::PathBuf| -> u64 {
        let n = p.file_name().unwrap().to_string_lossy().into_owned();
        n[9..23].parse().unwrap() // YYYYmmddHHMMSS
    };
    // after the first, every file starts on the next wall-clock second (rotations on the
    // boundary, even with no packet flowing)
    for w in files[1..].windows(2) {
        let (s0, s1) = (stamp(&w[0]), stamp(&w[1]));
        assert!(s1 > s0, "{files:?}");
    }
    let total: usize = files.iter().map(|f| tshark_packets(f).len()).sum();
    assert_eq!(total, 200);
    for f in &files {
        capinfos_clean(f);
    }
}

//! Captures made in the test by real tcpdump (µs and ns, `-i any` and one interface) and
//! dumpcap (pcapng, two interfaces) in network namespaces with real traffic: our merge, read
//! back by tshark, equals `mergecap -I none` packet for packet, with our interface names.

mod common;

use common::*;
use std::time::Duration;

fn make_traffic(net: &NetPair) {
    // different sizes, both directions, and loopback traffic inside namespace a
    for size in ["56", "1400", "700"] {
        run_ok(&mut net.exec(
            &net.a,
            &["ping", "-c", "8", "-i", "0.01", "-s", size, &net.ip_b],
        ));
    }
    run_ok(&mut net.exec(&net.b, &["ping", "-c", "5", "-i", "0.01", &net.ip_a]));
    run_ok(&mut net.exec(&net.a, &["ping", "-c", "5", "-i", "0.01", "127.0.0.1"]));
}

#[test]
fn merge_of_real_tcpdump_and_dumpcap_captures_equals_mergecap() {
    let net = NetPair::new("m");
    let dir = tmpdir();
    let p = |n: &str| dir.path().join(n);
    let dev_a = format!("{}-v", net.a);

    let mut caps = Vec::new();
    let mut c = net.exec(&net.a, &["tcpdump", "-n", "-U", "-i", &dev_a, "-w"]);
    c.arg(p("a_us.pcap"));
    caps.push(start_capture(c, "listening on"));
    let mut c = net.exec(
        &net.b,
        &[
            "tcpdump",
            "-n",
            "-U",
            "-i",
            "any",
            "--time-stamp-precision=nano",
            "-w",
        ],
    );
    c.arg(p("b_ns.pcap"));
    caps.push(start_capture(c, "listening on"));
    let mut c = net.exec(&net.a, &["dumpcap", "-q", "-i", &dev_a, "-i", "lo", "-w"]);
    c.arg(p("c.pcapng"));
    caps.push(start_capture(c, "Capturing on"));
    std::thread::sleep(Duration::from_millis(300));
    make_traffic(&net);
    std::thread::sleep(Duration::from_millis(300));
    for c in caps {
        stop_capture(c);
    }

    let inputs = [p("a_us.pcap"), p("b_ns.pcap"), p("c.pcapng")];
    let ours = p("ours.pcapng");
    run_ok(bin().arg("merge").arg("-w").arg(&ours).args(&inputs));
    let theirs = p("mergecap.pcapng");
    run_ok(
        tool("mergecap")
            .args(["-I", "none", "-w"])
            .arg(&theirs)
            .args(&inputs),
    );

    let ours_pk = tshark_packets(&ours);
    let theirs_pk = tshark_packets(&theirs);
    assert!(
        theirs_pk.len() > 60,
        "only {} packets captured",
        theirs_pk.len()
    );
    assert_eq!(ours_pk.len(), theirs_pk.len());
    // mergecap -I none numbers interfaces input by input, as we do
    let expected_name = |id: u32| match id {
        0 => "a_us".to_string(),
        1 => "b_ns".to_string(),
        2 => format!("c/{dev_a}"),
        3 => "c/lo".to_string(),
        other => panic!("unexpected interface {other}"),
    };
    // Packet for packet, except that among packets with the same timestamp we keep input
    // order while mergecap 4.0 puts the last input first: compare equal-time runs as sets,
    // and check our runs are in input order.
    let input_of = |name: &str| match name {
        "a_us" => 0,
        "b_ns" => 1,
        _ => 2,
    };
    let key = |p: &TsharkPacket, name: String| (p.ts, p.len, p.cap_len, p.bytes.clone(), name);
    let mut per_name = std::collections::BTreeMap::new();
    let mut i = 0;
    while i < ours_pk.len() {
        let mut j = i;
        while j < ours_pk.len() && ours_pk[j].ts == ours_pk[i].ts {
            j += 1;
        }
        let mut o: Vec<_> = ours_pk[i..j]
            .iter()
            .map(|p| key(p, p.iface_name.clone()))
            .collect();
        let mut t: Vec<_> = theirs_pk[i..j]
            .iter()
            .map(|p| key(p, expected_name(p.iface_id)))
            .collect();
        let order: Vec<usize> = o.iter().map(|k| input_of(&k.4)).collect();
        assert!(
            order.windows(2).all(|w| w[0] <= w[1]),
            "ties out of input order at packet {}",
            i + 1
        );
        o.sort();
        t.sort();
        assert_eq!(o, t, "packets {}..{}", i + 1, j);
        for k in &o {
            *per_name.entry(k.4.clone()).or_insert(0) += 1;
        }
        i = j;
    }
    assert_eq!(per_name.len(), 4, "{per_name:?}");
    capinfos_clean(&ours);
    let info = capinfos_clean(&ours);
    assert!(
        info.contains("Linux cooked-mode capture v2"),
        "-i any keeps LINUX_SLL2: {info}"
    );

    // the same through stdin and --name
    let file = std::fs::File::open(&inputs[0]).unwrap();
    let res = run_ok(
        bin()
            .args(["merge", "--name", "from-stdin", "-"])
            .arg(&inputs[1])
            .stdin(file),
    );
    let piped = p("piped.pcapng");
    std::fs::write(&piped, &res.stdout).unwrap();
    let names: std::collections::BTreeSet<String> = tshark_packets(&piped)
        .into_iter()
        .map(|p| p.iface_name)
        .collect();
    assert_eq!(
        names,
        ["from-stdin", "b_ns"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}

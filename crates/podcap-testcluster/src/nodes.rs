//! The emulated nodes and their pod network: `--nodes N` (node-1…node-N, each with its own
//! hostIP and pod CIDR block), `--pod-network-cidr` (the whole range, by default one that local
//! clusters do not use), `--clock-offset NODE=±DURATION` and the parsing of durations.

use std::net::Ipv4Addr;

/// The pod network when none is given. kind, kubeadm's flannel default, minikube, k0s and
/// Talos use 10.244.0.0/16; k3s 10.42.0.0/16; Calico 192.168.0.0/16; MicroK8s and Docker
/// Desktop 10.1.0.0/16; Weave 10.32.0.0/12; podman 10.88.0.0/16; Docker 172.17.0.0/16 and up.
pub const DEFAULT_POD_NETWORK: &str = "10.213.0.0/16";

/// Most nodes a cluster may have (their hostIPs are 192.0.2.10 and up).
pub const MAX_NODES: usize = 200;

/// Name of node `i` (0-based): `node-1`, `node-2`…
pub fn node_name(i: usize) -> String {
    format!("node-{}", i + 1)
}

/// Index (0-based) of node `name` among `nodes` nodes.
pub fn node_index(name: &str, nodes: usize) -> Option<usize> {
    let n: usize = name.strip_prefix("node-")?.parse().ok()?;
    (1..=nodes).contains(&n).then(|| n - 1)
}

/// hostIP (InternalIP) of node `i` (0-based): 192.0.2.10, .11, … (TEST-NET-1: reported only,
/// never assigned to an interface).
pub fn host_ip(i: usize) -> String {
    format!("192.0.2.{}", 10 + i)
}

/// An IPv4 pod network split into one block per node, as a controller manager hands out
/// node podCIDRs (a /24 each when the range allows, as kube-controller-manager's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodNetwork {
    base: u32,
    prefix: u8,
    node_prefix: u8,
    nodes: usize,
}

impl PodNetwork {
    /// Parses `10.213.0.0/16` for `nodes` nodes.
    pub fn parse(cidr: &str, nodes: usize) -> Result<PodNetwork, String> {
        let (addr, len) = cidr.trim().split_once('/').ok_or_else(|| {
            format!("pod network {cidr:?} is not an IPv4 CIDR like 10.213.0.0/16")
        })?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("pod network {cidr:?}: {addr:?} is not an IPv4 address"))?;
        let prefix: u8 = len
            .parse()
            .ok()
            .filter(|p| (8..=28).contains(p))
            .ok_or_else(|| {
                format!("pod network {cidr:?}: the prefix length must be between 8 and 28")
            })?;
        let base = u32::from(addr);
        let mask = u32::MAX << (32 - prefix);
        if base & !mask != 0 {
            return Err(format!(
                "pod network {cidr:?} has host bits set; did you mean {}/{prefix}?",
                Ipv4Addr::from(base & mask)
            ));
        }
        if nodes == 0 || nodes > MAX_NODES {
            return Err(format!("--nodes must be between 1 and {MAX_NODES}"));
        }
        let bits = usize::BITS - (nodes - 1).leading_zeros(); // ceil(log2(nodes))
        let node_prefix = 24.max(u32::from(prefix) + bits);
        if node_prefix > 29 {
            return Err(format!(
                "pod network {cidr:?} is too small for {nodes} nodes (each needs at least a /29)"
            ));
        }
        Ok(PodNetwork {
            base,
            prefix,
            node_prefix: node_prefix as u8,
            nodes,
        })
    }

    /// The whole range, `10.213.0.0/16`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }

    /// Prefix length of the whole range (the pods' interfaces carry it: one L2 segment).
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    fn block(&self, node: usize) -> u32 {
        self.base + ((node as u32) << (32 - self.node_prefix))
    }

    /// Node `node`'s (0-based) podCIDR, `10.213.1.0/24`.
    pub fn node_cidr(&self, node: usize) -> String {
        format!("{}/{}", Ipv4Addr::from(self.block(node)), self.node_prefix)
    }

    /// Pod addresses per node: the block without its network address, the gateway (.1) and the
    /// broadcast address.
    pub fn capacity(&self) -> usize {
        (1usize << (32 - self.node_prefix)) - 3
    }

    /// The `i`-th pod address of node `node` (wraps around the node's block).
    pub fn pod_ip(&self, node: usize, i: usize) -> Ipv4Addr {
        Ipv4Addr::from(self.block(node) + 2 + (i % self.capacity()) as u32)
    }

    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        overlaps((self.base, self.prefix), (u32::from(ip), 32))
    }
}

fn overlaps(a: (u32, u8), b: (u32, u8)) -> bool {
    let p = a.1.min(b.1);
    let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
    a.0 & mask == b.0 & mask
}

/// The routes and addresses of this machine that overlap `net` (`ip -4 route show table all`,
/// `ip -4 -o addr show`; the default route does not count): each as `ip` prints it.
pub fn routed_overlaps(net: &PodNetwork) -> Vec<String> {
    let run = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let mine = (net.base, net.prefix);
    let mut out = Vec::new();
    for line in run(&["-4", "route", "show", "table", "all"]).lines() {
        // The local table's `local`/`broadcast` entries repeat the addresses (listed below).
        let mut words = line.split_whitespace().peekable();
        if matches!(
            words.peek(),
            Some(&("local" | "broadcast" | "multicast" | "anycast"))
        ) {
            continue;
        }
        let dest = words.find(|w| {
            !matches!(
                *w,
                "unicast" | "unreachable" | "blackhole" | "prohibit" | "throw" | "nat"
            )
        });
        if let Some(p) = dest.and_then(parse_prefix) {
            if overlaps(mine, p) {
                out.push(format!("route {}", line.trim()));
            }
        }
    }
    for line in run(&["-4", "-o", "addr", "show"]).lines() {
        // `3: cni0    inet 10.244.0.1/24 brd … scope global cni0\ …`
        let mut w = line.split_whitespace();
        let dev = w.nth(1).unwrap_or("");
        if let Some(p) = w.skip_while(|x| *x != "inet").nth(1).and_then(parse_prefix) {
            if overlaps(mine, p) {
                out.push(format!("address {}/{} on {dev}", Ipv4Addr::from(p.0), p.1));
            }
        }
    }
    out
}

/// `10.1.0.0/16` or `10.1.2.3` → (address, length); `default` → None.
fn parse_prefix(s: &str) -> Option<(u32, u8)> {
    let (a, l) = s.split_once('/').unwrap_or((s, "32"));
    let a: Ipv4Addr = a.parse().ok()?;
    let l: u8 = l.parse().ok().filter(|l| *l <= 32)?;
    (l > 0).then_some((u32::from(a), l))
}

/// Parses a signed duration: `40ms`, `+40ms`, `-1.5s`, `250us`, `800ns`, `2m`, `0` → nanoseconds.
pub fn parse_signed_duration(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let ns = parse_duration_ns(t).map_err(|e| format!("{s:?}: {e}"))?;
    let ns = i64::try_from(ns).map_err(|_| format!("{s:?} is too long"))?;
    Ok(if neg { -ns } else { ns })
}

/// Parses an unsigned duration (`20ms`, `1.5s`, `0`) into nanoseconds.
pub fn parse_duration_ns(t: &str) -> Result<u128, String> {
    let t = t.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| "not a duration like 40ms, 1.5s or 250us".to_string())?;
    let scale = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "" if v == 0.0 => 0.0,
        "" => return Err("needs a unit: ns, us, ms, s or m".into()),
        u => return Err(format!("unknown unit {u:?} (ns, us, ms, s or m)")),
    };
    Ok((v * scale).round() as u128)
}

/// One `--clock-offset NODE=±DURATION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockOffset {
    /// `node-2`.
    pub node: String,
    /// Nanoseconds added to every timestamp a capture on that node produces.
    pub nanos: i64,
}

impl ClockOffset {
    /// Parses `node-2=+40ms`.
    pub fn parse(s: &str) -> Result<ClockOffset, String> {
        let (node, d) = s.split_once('=').ok_or_else(|| {
            format!("clock offset {s:?} is not NODE=±DURATION (e.g. node-2=+40ms)")
        })?;
        Ok(ClockOffset {
            node: node.trim().to_string(),
            nanos: parse_signed_duration(d).map_err(|e| format!("clock offset {e}"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_blocks() {
        let n = PodNetwork::parse(DEFAULT_POD_NETWORK, 3).expect("parse");
        assert_eq!(n.cidr(), "10.213.0.0/16");
        assert_eq!(n.node_cidr(0), "10.213.0.0/24");
        assert_eq!(n.node_cidr(2), "10.213.2.0/24");
        assert_eq!(n.pod_ip(1, 0).to_string(), "10.213.1.2");
        assert_eq!(n.capacity(), 253);
        assert_eq!(n.pod_ip(0, 253).to_string(), "10.213.0.2");
        let small = PodNetwork::parse("10.9.8.0/26", 2).expect("parse");
        assert_eq!(small.node_cidr(1), "10.9.8.32/27");
        assert!(PodNetwork::parse("10.9.8.0/28", 4).is_err());
        assert!(PodNetwork::parse("10.213.1.0/16", 1)
            .unwrap_err()
            .contains("10.213.0.0/16"));
        assert!(PodNetwork::parse("fd00::/64", 1).is_err());
        assert!(n.contains("10.213.200.1".parse().expect("ip")));
        assert!(!n.contains("10.214.0.1".parse().expect("ip")));
    }

    #[test]
    fn nodes_by_name() {
        assert_eq!(node_index("node-2", 3), Some(1));
        assert_eq!(node_index("node-4", 3), None);
        assert_eq!(node_index("node-0", 3), None);
        assert_eq!(node_name(0), "node-1");
        assert_eq!(host_ip(1), "192.0.2.11");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_signed_duration("+40ms"), Ok(40_000_000));
        assert_eq!(parse_signed_duration("-1.5s"), Ok(-1_500_000_000));
        assert_eq!(parse_signed_duration("250us"), Ok(250_000));
        assert_eq!(parse_signed_duration("0"), Ok(0));
        assert!(parse_signed_duration("40").is_err());
        assert!(parse_signed_duration("4x").is_err());
        let o = ClockOffset::parse("node-2=-40ms").expect("parse");
        assert_eq!((o.node.as_str(), o.nanos), ("node-2", -40_000_000));
        assert!(ClockOffset::parse("node-2").is_err());
    }

    #[test]
    fn prefixes_overlap() {
        assert!(overlaps((0x0a00_0000, 8), (0x0ad5_0100, 24)));
        assert!(!overlaps((0x0ad5_0000, 16), (0x0ad6_0000, 16)));
        assert_eq!(parse_prefix("default"), None);
        assert_eq!(parse_prefix("10.0.0.1"), Some((0x0a00_0001, 32)));
    }
}

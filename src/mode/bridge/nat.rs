//! Egress and hostPorts of bridge mode, in one nftables table per network
//! (`table ip smarter-cni-<network>`). `setup` loads the base ruleset with `nft -f` (a node
//! command); on the pod path the plugin only adds and removes elements of two maps over
//! netlink (`nftnl`), never runs a program:
//! - `hostports`    `proto . port → pod . port` for mappings on every node address,
//! - `hostports_ip` `ip . proto . port → pod . port` for mappings with a `hostIP`.
//!
//! Each element's comment names its owner (`<attachment id> <namespace>/<pod>`), so a refused
//! port names the pod that holds it and GC finds stale ones. Adds are all or nothing and
//! race-free: the check of who holds a port and the insert are one transaction pinned to the
//! ruleset generation the check read.

mod nftnl;

use crate::cni::{code, CniError};
use crate::ipv4::Ipv4Net;
use nftnl::{Element, Nft, Op};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

const ANY: &str = "hostports";
const BY_IP: &str = "hostports_ip";
const CHAINS: [&str; 5] = ["guard", "prerouting", "output", "hostport", "postrouting"];
/// Bumped when the rules change shape, so `setup` replaces an older table instead of
/// refreshing it.
const RULESET_VERSION: u32 = 1;
/// Transactions lost to a concurrent commit (another ADD, any nftables user) before giving up.
const RETRIES: usize = 50;

/// What the NAT rules of one bridge-mode network depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatNet {
    network: String,
    bridge: String,
    subnet: Ipv4Net,
}

impl NatNet {
    /// Both names end up in nftables text and a /proc path: only `[A-Za-z0-9_.-]`, the
    /// network name as CNI allows it, the bridge as an interface name (≤ 15).
    pub fn new(network: &str, bridge: &str, subnet: Ipv4Net) -> Result<NatNet, String> {
        let plain = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if network.is_empty() || network.len() > 64 || !plain(network) || !network.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(format!("network name {network:?} cannot name an nftables table: use letters, digits, '_', '.', '-' (≤ 64)"));
        }
        if bridge.is_empty() || bridge.len() > 15 || !plain(bridge) || bridge == "." || bridge == ".." {
            return Err(format!("bridge name {bridge:?} is not a usable interface name: letters, digits, '_', '.', '-' (≤ 15)"));
        }
        let subnet = Ipv4Net { addr: subnet.network(), prefix_len: subnet.prefix_len };
        Ok(NatNet { network: network.into(), bridge: bridge.into(), subnet })
    }

    pub fn table(&self) -> String {
        format!("smarter-cni-{}", self.network)
    }

    /// The table's comment: which configuration the loaded rules were rendered from.
    fn fingerprint(&self) -> String {
        format!("smarter-cni v{RULESET_VERSION} subnet {} bridge {}", self.subnet, self.bridge)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// IPPROTO_* as `meta l4proto` yields it.
    fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(if *self == Protocol::Tcp { "tcp" } else { "udp" })
    }
}

/// One entry of the `portMappings` capability. Parses the CNI spelling (`hostPort`, …) and
/// containerd's Go field names (`HostPort`, …); `hostIP` empty, `0.0.0.0` or `::` means
/// every node address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WireMapping")]
pub struct PortMapping {
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    pub protocol: Protocol,
    #[serde(rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<Ipv4Addr>,
}

#[derive(Deserialize)]
struct WireMapping {
    #[serde(rename = "hostPort", alias = "HostPort")]
    host_port: i64,
    #[serde(rename = "containerPort", alias = "ContainerPort")]
    container_port: i64,
    #[serde(default, alias = "Protocol")]
    protocol: String,
    #[serde(default, rename = "hostIP", alias = "HostIP")]
    host_ip: String,
}

impl TryFrom<WireMapping> for PortMapping {
    type Error = String;

    fn try_from(w: WireMapping) -> Result<PortMapping, String> {
        let port = |what: &str, n: i64| match u16::try_from(n) {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(format!("portMappings: {what} {n} is not a port (1-65535)")),
        };
        let protocol = match w.protocol.to_ascii_lowercase().as_str() {
            "" | "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => return Err(format!("portMappings: protocol {other:?} is not supported in bridge mode: use TCP or UDP")),
        };
        let host_ip = match w.host_ip.as_str() {
            "" | "0.0.0.0" | "::" => None,
            ip => match ip.parse::<Ipv4Addr>() {
                Ok(ip) => Some(ip),
                Err(_) => return Err(format!("portMappings: hostIP {ip:?} is not an IPv4 address (bridge mode is IPv4 only)")),
            },
        };
        Ok(PortMapping { host_port: port("hostPort", w.host_port)?, container_port: port("containerPort", w.container_port)?, protocol, host_ip })
    }
}

impl PortMapping {
    /// Whether the two need the same host port: same protocol and port on a shared address.
    pub fn overlaps(&self, other: &PortMapping) -> bool {
        self.protocol == other.protocol
            && self.host_port == other.host_port
            && (self.host_ip.is_none() || other.host_ip.is_none() || self.host_ip == other.host_ip)
    }
}

/// The node's side, as Docker mode writes it: `8080/tcp` or `192.0.2.7:8080/tcp`.
impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.host_ip {
            Some(ip) => write!(f, "{ip}:{}/{}", self.host_port, self.protocol),
            None => write!(f, "{}/{}", self.host_port, self.protocol),
        }
    }
}

/// Who a map element belongs to: the attachment (what GC and DEL go by) and, for messages,
/// the pod. Kept in the element's comment (≤ 253 bytes: a long pod name is cut there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub attachment_id: String,
    /// Both empty when the caller is not a Kubernetes pod.
    pub namespace: String,
    pub pod: String,
}

impl Owner {
    pub fn new(attachment_id: &str, namespace: &str, pod: &str) -> Result<Owner, String> {
        let token = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        if attachment_id.is_empty() || attachment_id.len() > 128 || !token(attachment_id) {
            return Err(format!("attachment id {attachment_id:?} must be 1-128 printable characters without spaces"));
        }
        if !token(namespace) || !token(pod) || namespace.contains('/') || namespace.len() > 63 || pod.len() > 253 {
            return Err(format!("pod {namespace}/{pod} is not a Kubernetes namespace and name"));
        }
        Ok(Owner { attachment_id: attachment_id.into(), namespace: namespace.into(), pod: pod.into() })
    }

    fn comment(&self) -> String {
        let mut text = self.attachment_id.clone();
        if !self.pod.is_empty() || !self.namespace.is_empty() {
            text.push_str(&format!(" {}/{}", self.namespace, self.pod));
        }
        text.truncate(nftnl::USERDATA_MAX - 3);
        text
    }

    fn parse(comment: &str) -> Option<Owner> {
        let (attachment_id, pod) = comment.split_once(' ').unwrap_or((comment, ""));
        let (namespace, pod) = pod.split_once('/').unwrap_or(("", ""));
        (!attachment_id.is_empty()).then(|| Owner { attachment_id: attachment_id.into(), namespace: namespace.into(), pod: pod.into() })
    }

    fn describe(&self) -> String {
        let short = self.attachment_id.get(..12).unwrap_or(&self.attachment_id);
        if self.pod.is_empty() {
            format!("attachment {short} (not a pod)")
        } else {
            format!("pod {}/{} (sandbox {short})", self.namespace, self.pod)
        }
    }
}

#[derive(Debug)]
pub enum NatError {
    /// Another attachment's element has it; `None`: an element smarter-cni did not write.
    Taken { wanted: PortMapping, holder: Option<Owner> },
    /// A process on the node listens there.
    InUseOnNode { wanted: PortMapping },
    /// `hostIP` is not an address of the node.
    NotLocal { wanted: PortMapping },
    /// The same host port twice in one pod's `portMappings`.
    Duplicate { wanted: PortMapping },
    /// The base ruleset is not loaded.
    NoRuleset(String),
    Io(io::Error),
}

impl fmt::Display for NatError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            NatError::Taken { wanted, holder: Some(holder) } => write!(
                f,
                "hostPort {wanted} is already held by {}: one host port serves one pod per node; \
                 stop that pod or give one of them another hostPort",
                holder.describe()
            ),
            NatError::Taken { wanted, holder: None } => write!(
                f,
                "hostPort {wanted} is already held by an nftables map element that smarter-cni did not write: \
                 see `nft list map ip <table> {ANY}` and `{BY_IP}`, delete it or give the pod another hostPort"
            ),
            NatError::InUseOnNode { wanted } => write!(
                f,
                "hostPort {wanted} is in use on the node by a process that is not a pod: \
                 find it with `ss -lnptu 'sport = :{}'`, stop it or give the pod another hostPort",
                wanted.host_port
            ),
            NatError::NotLocal { wanted } => write!(
                f,
                "hostPort {wanted}: hostIP is not an address of this node; use one of the node's addresses or leave hostIP empty"
            ),
            NatError::Duplicate { wanted } => write!(f, "portMappings asks for hostPort {wanted} more than once"),
            NatError::NoRuleset(why) => write!(f, "{why}: run `smarter-cni setup` to load the NAT rules"),
            NatError::Io(e) => write!(f, "programming hostPorts through nftables failed: {e}"),
        }
    }
}

impl From<NatError> for CniError {
    fn from(e: NatError) -> CniError {
        let code = match e {
            NatError::Taken { .. } | NatError::InUseOnNode { .. } | NatError::NotLocal { .. } => code::ENGINE_FAILURE,
            NatError::Duplicate { .. } => code::INVALID_NETWORK_CONFIG,
            NatError::NoRuleset(_) => code::TRY_AGAIN_LATER,
            NatError::Io(_) => code::IO_FAILURE,
        };
        CniError::new(code, e.to_string())
    }
}

/// The whole base ruleset as `nft -f` text: replaces any table of that name in one
/// transaction (nothing is ever without rules), empty maps.
pub fn base_ruleset(net: &NatNet) -> String {
    render(net, "delete")
}

/// `prefix` is `delete` (new table) or `flush` (same configuration: rules re-written,
/// map elements, i.e. running pods' hostPorts, kept).
fn render(net: &NatNet, prefix: &str) -> String {
    let (t, br, subnet) = (net.table(), &net.bridge, net.subnet);
    format!(
        r#"# smarter-cni bridge mode, network {network}: egress masquerade and hostPorts.
# Loaded by `smarter-cni setup`; the plugin adds and removes the map elements per pod.
table ip {t}
{prefix} table ip {t}
table ip {t} {{
	comment "{fingerprint}"
	map {ANY} {{
		type inet_proto . inet_service : ipv4_addr . inet_service
	}}
	map {BY_IP} {{
		type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service
	}}
	# route_localnet is on for the bridge (127.0.0.1 hostPorts): pods must not reach the
	# node's loopback services with it.
	chain guard {{
		type filter hook prerouting priority raw; policy accept;
		iifname "{br}" ip daddr 127.0.0.0/8 drop
	}}
	chain prerouting {{
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local jump hostport
	}}
	chain output {{
		type nat hook output priority -100; policy accept;
		fib daddr type local jump hostport
	}}
	chain hostport {{
		dnat ip to ip daddr . meta l4proto . th dport map @{BY_IP}
		dnat ip to meta l4proto . th dport map @{ANY}
	}}
	chain postrouting {{
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr {subnet} oifname != "{br}" masquerade
		oifname "{br}" ct status dnat ip saddr {subnet} masquerade
		oifname "{br}" ip saddr 127.0.0.0/8 masquerade
	}}
}}
"#,
        network = net.network,
        fingerprint = net.fingerprint(),
    )
}

/// `setup`: loads the base ruleset with `nft -f -`. Idempotent; when the loaded table came
/// from the same configuration its rules are rewritten and the pods' hostPorts kept.
pub fn load_base_ruleset(net: &NatNet) -> io::Result<()> {
    let same = Nft::open().and_then(|mut nft| nft.table_comment(&net.table())).ok().flatten() == Some(net.fingerprint());
    let text = render(net, if same { "flush" } else { "delete" });
    let mut child = Command::new("nft").args(["-f", "-"]).stdin(Stdio::piped()).stderr(Stdio::piped()).stdout(Stdio::null()).spawn()?;
    child.stdin.take().expect("piped").write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(io::Error::other(format!("nft -f refused the ruleset of network {}: {}", net.network, err.trim())));
    }
    Ok(())
}

/// STATUS/`status`: the table is there, from this configuration, with its chains and maps.
pub fn check_base_ruleset(net: &NatNet) -> Result<(), String> {
    let table = net.table();
    let missing = |what: String, e: io::Error| format!("{what} of network {} is missing ({e})", net.network);
    let mut nft = Nft::open().map_err(|e| format!("cannot talk to nftables: {e}"))?;
    match nft.table_comment(&table).map_err(|e| missing(format!("nftables table ip {table}"), e))? {
        Some(c) if c == net.fingerprint() => {}
        c => {
            return Err(format!(
                "nftables table ip {table} was loaded for another configuration ({:?}, want {:?}): run `smarter-cni setup`",
                c.unwrap_or_default(),
                net.fingerprint()
            ))
        }
    }
    for chain in CHAINS {
        nft.chain_exists(&table, chain).map_err(|e| missing(format!("chain {chain} of table ip {table}"), e))?;
    }
    for (set, key_len) in [(ANY, 8), (BY_IP, 12)] {
        let lengths = nft.set_lengths(&table, set).map_err(|e| missing(format!("map {set} of table ip {table}"), e))?;
        if lengths != (key_len, 8) {
            return Err(format!("map {set} of table ip {table} has the wrong type: run `smarter-cni setup`"));
        }
    }
    Ok(())
}

/// Programs a pod's hostPorts, all or nothing. Refuses (code 100) a port another pod holds,
/// naming it, or one a node process listens on. A repeated ADD of the same attachment
/// replaces its own elements.
pub fn add_port_mappings(net: &NatNet, pod: Ipv4Addr, owner: &Owner, mappings: &[PortMapping]) -> Result<(), NatError> {
    for (i, wanted) in mappings.iter().enumerate() {
        if mappings[..i].iter().any(|m| m.overlaps(wanted)) {
            return Err(NatError::Duplicate { wanted: *wanted });
        }
    }
    let mut nft = Nft::open().map_err(NatError::Io)?;
    let table = net.table();
    for _ in 0..RETRIES {
        let generation = nft.generation().map_err(NatError::Io)?;
        let held = match snapshot(&mut nft, &table) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(NatError::NoRuleset(format!("nftables table ip {table} (network {}) is not loaded", net.network)))
            }
            other => other.map_err(NatError::Io)?,
        };
        let (mine, others): (Vec<&Held>, Vec<&Held>) =
            held.iter().partition(|h| h.owner.as_ref().is_some_and(|o| o.attachment_id == owner.attachment_id));
        for wanted in mappings {
            if let Some(h) = others.iter().find(|h| h.mapping.overlaps(wanted)) {
                return Err(NatError::Taken { wanted: *wanted, holder: h.owner.clone() });
            }
            probe_node(wanted)?;
        }
        let new: Vec<(&str, Element)> = mappings.iter().map(|m| encode(m, pod, owner)).collect();
        let group = |items: &mut dyn Iterator<Item = (&str, Element)>| {
            let (mut any, mut by_ip) = (Vec::new(), Vec::new());
            for (set, e) in items {
                if set == ANY { any.push(e) } else { by_ip.push(e) }
            }
            (any, by_ip)
        };
        let (old_any, old_ip) = group(&mut mine.iter().map(|h| (h.set, h.element.clone())));
        let (new_any, new_ip) = group(&mut new.into_iter());
        let ops = [
            Op::Delete { set: ANY, elements: &old_any },
            Op::Delete { set: BY_IP, elements: &old_ip },
            Op::Add { set: ANY, elements: &new_any },
            Op::Add { set: BY_IP, elements: &new_ip },
        ];
        match nft.commit(generation, &table, &ops) {
            Ok(()) if mine.is_empty() => return Ok(()),
            Ok(()) => {
                nft.close_aside();
                return Ok(());
            }
            Err(e) if lost_race(&e) => continue,
            Err(e) => return Err(NatError::Io(e)),
        }
    }
    Err(NatError::Io(io::Error::other("the nftables ruleset kept changing under us; try again")))
}

/// Removes every hostPort of the attachment; returns how many. Gone (or no table) is success.
pub fn remove_port_mappings(net: &NatNet, attachment_id: &str) -> io::Result<usize> {
    let mut nft = Nft::open()?;
    let table = net.table();
    for _ in 0..RETRIES {
        let generation = nft.generation()?;
        let held = match snapshot(&mut nft, &table) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            other => other?,
        };
        let mine = |set: &str| -> Vec<Element> {
            held.iter()
                .filter(|h| h.set == set && h.owner.as_ref().is_some_and(|o| o.attachment_id == attachment_id))
                .map(|h| h.element.clone())
                .collect()
        };
        let (any, by_ip) = (mine(ANY), mine(BY_IP));
        match nft.commit(generation, &table, &[Op::Delete { set: ANY, elements: &any }, Op::Delete { set: BY_IP, elements: &by_ip }]) {
            Ok(()) => {
                if !any.is_empty() || !by_ip.is_empty() {
                    nft.close_aside();
                }
                return Ok(any.len() + by_ip.len());
            }
            Err(e) if lost_race(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("the nftables ruleset kept changing under us; try again"))
}

/// Every programmed hostPort: mapping, pod address, owner (an element without a
/// smarter-cni comment has an empty `attachment_id`).
pub fn list_port_mappings(net: &NatNet) -> io::Result<Vec<(PortMapping, Ipv4Addr, Owner)>> {
    let held = snapshot(&mut Nft::open()?, &net.table())?;
    let unknown = || Owner { attachment_id: String::new(), namespace: String::new(), pod: String::new() };
    Ok(held.into_iter().map(|h| (h.mapping, h.pod, h.owner.unwrap_or_else(unknown))).collect())
}

/// IPv4 forwarding for the node (egress, hostPorts from other hosts), and `route_localnet`
/// on the bridge so hostPorts answer on 127.0.0.1 as Docker's proxy does (the ruleset's
/// `guard` chain keeps pods off the node's loopback). Call after the bridge exists.
pub fn ensure_forwarding(net: &NatNet) -> io::Result<()> {
    for path in ["/proc/sys/net/ipv4/ip_forward".to_string(), format!("/proc/sys/net/ipv4/conf/{}/route_localnet", net.bridge)] {
        if std::fs::read_to_string(&path)?.trim() != "1" {
            std::fs::write(&path, "1").map_err(|e| io::Error::new(e.kind(), format!("writing 1 to {path}: {e}")))?;
        }
    }
    Ok(())
}

/// ERESTART: a commit came between our read and our batch; EEXIST/ENOENT: an element
/// appeared or went in that window (the generation check normally catches it first).
fn lost_race(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ERESTART) | Some(libc::EEXIST) | Some(libc::ENOENT))
}

struct Held {
    set: &'static str,
    element: Element,
    mapping: PortMapping,
    pod: Ipv4Addr,
    owner: Option<Owner>,
}

fn snapshot(nft: &mut Nft, table: &str) -> io::Result<Vec<Held>> {
    let mut out = Vec::new();
    for set in [ANY, BY_IP] {
        for element in nft.elements(table, set)? {
            if let Some((mapping, pod)) = decode(set, &element) {
                let owner = element.comment.as_deref().and_then(Owner::parse);
                out.push(Held { set, element, mapping, pod, owner });
            }
        }
    }
    Ok(out)
}

/// Key and data as the kernel stores a concatenation: each field in network order, padded
/// to 4 bytes (`inet_proto` 1 → 4, `inet_service` 2 → 4).
fn encode(m: &PortMapping, pod: Ipv4Addr, owner: &Owner) -> (&'static str, Element) {
    let word = |b: &[u8]| {
        let mut w = [0u8; 4];
        w[..b.len()].copy_from_slice(b);
        w
    };
    let mut key = Vec::with_capacity(12);
    if let Some(ip) = m.host_ip {
        key.extend_from_slice(&ip.octets());
    }
    key.extend_from_slice(&word(&[m.protocol.number()]));
    key.extend_from_slice(&word(&m.host_port.to_be_bytes()));
    let mut data = pod.octets().to_vec();
    data.extend_from_slice(&word(&m.container_port.to_be_bytes()));
    let set = if m.host_ip.is_some() { BY_IP } else { ANY };
    (set, Element { key, data, comment: Some(owner.comment()) })
}

fn decode(set: &str, e: &Element) -> Option<(PortMapping, Ipv4Addr)> {
    let (host_ip, rest) = match (set, e.key.len()) {
        (ANY, 8) => (None, &e.key[..]),
        (BY_IP, 12) => (Some(Ipv4Addr::new(e.key[0], e.key[1], e.key[2], e.key[3])), &e.key[4..]),
        _ => return None,
    };
    let protocol = match rest[0] {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        _ => return None,
    };
    let d = e.data.get(..6)?;
    let mapping = PortMapping {
        host_port: u16::from_be_bytes([rest[4], rest[5]]),
        container_port: u16::from_be_bytes([d[4], d[5]]),
        protocol,
        host_ip,
    };
    Some((mapping, Ipv4Addr::new(d[0], d[1], d[2], d[3])))
}

/// Like Docker mode: a node process listening on the port would be shadowed by the DNAT,
/// so refuse it. A probe bind released at once; it also tells a `hostIP` that is not the
/// node's (EADDRNOTAVAIL).
fn probe_node(wanted: &PortMapping) -> Result<(), NatError> {
    let address = std::net::SocketAddr::from((wanted.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), wanted.host_port));
    let probe = match wanted.protocol {
        Protocol::Tcp => std::net::TcpListener::bind(address).map(drop),
        Protocol::Udp => std::net::UdpSocket::bind(address).map(drop),
    };
    match probe {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(NatError::InUseOnNode { wanted: *wanted }),
        Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable => Err(NatError::NotLocal { wanted: *wanted }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<PortMapping, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn port_mappings_parse_in_both_spellings() {
        let cni = parse(r#"{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""}"#).unwrap();
        let go = parse(r#"{"HostPort": 8080, "ContainerPort": 80, "Protocol": "TCP", "HostIP": ""}"#).unwrap();
        assert_eq!(cni, go);
        assert_eq!(cni, PortMapping { host_port: 8080, container_port: 80, protocol: Protocol::Tcp, host_ip: None });
        let udp = parse(r#"{"HostPort": 53, "ContainerPort": 5353, "Protocol": "Udp", "HostIP": "192.0.2.7", "Extra": 1}"#).unwrap();
        assert_eq!((udp.protocol, udp.host_ip), (Protocol::Udp, Some(Ipv4Addr::new(192, 0, 2, 7))));
        assert_eq!(udp.to_string(), "192.0.2.7:53/udp");
        assert_eq!(parse(r#"{"hostPort": 1, "containerPort": 2, "hostIP": "::"}"#).unwrap().host_ip, None);
        assert_eq!(serde_json::to_string(&udp).unwrap(), r#"{"hostPort":53,"containerPort":5353,"protocol":"udp","hostIP":"192.0.2.7"}"#);
    }

    #[test]
    fn bad_port_mappings_say_what_is_wrong() {
        let err = |json| parse(json).unwrap_err();
        assert!(err(r#"{"hostPort": 0, "containerPort": 80}"#).contains("hostPort 0 is not a port"));
        assert!(err(r#"{"hostPort": 70000, "containerPort": 80}"#).contains("hostPort 70000 is not a port"));
        assert!(err(r#"{"hostPort": 80, "containerPort": -1}"#).contains("containerPort -1 is not a port"));
        assert!(err(r#"{"hostPort": 80, "containerPort": 80, "protocol": "sctp"}"#).contains("\"sctp\" is not supported"));
        assert!(err(r#"{"hostPort": 80, "containerPort": 80, "hostIP": "fd00::1"}"#).contains("IPv4 only"));
        assert!(err(r#"{"containerPort": 80}"#).contains("hostPort"));
    }

    #[test]
    fn elements_encode_as_nft_stores_them_and_decode_back() {
        // `nft --debug=netlink add element ... { 192.168.1.2 . udp . 53 : 10.99.0.5 . 5353 }`
        // prints: element 0201a8c0 00000011 00003500 : 0500630a 0000e914
        let m = PortMapping { host_port: 53, container_port: 5353, protocol: Protocol::Udp, host_ip: Some(Ipv4Addr::new(192, 168, 1, 2)) };
        let owner = Owner::new("0123456789abcdef", "iot", "dns-0").unwrap();
        let (set, e) = encode(&m, Ipv4Addr::new(10, 99, 0, 5), &owner);
        assert_eq!(set, BY_IP);
        assert_eq!(e.key, [192, 168, 1, 2, 17, 0, 0, 0, 0, 53, 0, 0]);
        assert_eq!(e.data, [10, 99, 0, 5, 0x14, 0xe9, 0, 0]);
        assert_eq!(e.comment.as_deref(), Some("0123456789abcdef iot/dns-0"));
        assert_eq!(decode(set, &e), Some((m, Ipv4Addr::new(10, 99, 0, 5))));
        let any = PortMapping { host_ip: None, protocol: Protocol::Tcp, ..m };
        let (set, e) = encode(&any, Ipv4Addr::new(10, 99, 0, 5), &owner);
        assert_eq!((set, &e.key[..]), (ANY, &[6, 0, 0, 0, 0, 53, 0, 0][..]));
        assert_eq!(decode(set, &e).unwrap().0, any);
        assert_eq!(decode(BY_IP, &e), None, "wrong key length");
    }

    #[test]
    fn owners_round_trip_through_comments_and_fit() {
        let owner = Owner::new("0123456789abcdef0123", "iot", "holder-0").unwrap();
        assert_eq!(Owner::parse(&owner.comment()), Some(owner.clone()));
        assert_eq!(owner.describe(), "pod iot/holder-0 (sandbox 0123456789ab)");
        let plain = Owner::new("cnitool-1", "", "").unwrap();
        assert_eq!(plain.comment(), "cnitool-1");
        assert_eq!(Owner::parse("cnitool-1"), Some(plain.clone()));
        assert_eq!(plain.describe(), "attachment cnitool-1 (not a pod)");
        let long = Owner::new(&"a".repeat(128), &"n".repeat(63), &"p".repeat(253)).unwrap();
        assert_eq!(long.comment().len(), 253);
        assert!(Owner::new("", "a", "b").is_err());
        assert!(Owner::new("id with space", "a", "b").is_err());
        assert!(Owner::new("id", "a/b", "c").is_err());
        assert!(Owner::new("id", "a", "b\nc").is_err());
    }

    #[test]
    fn names_that_reach_nft_text_are_plain() {
        let subnet: Ipv4Net = "172.38.0.0/16".parse().unwrap();
        let net = NatNet::new("mynet", "mynet", subnet).unwrap();
        assert_eq!(net.table(), "smarter-cni-mynet");
        let text = base_ruleset(&net);
        assert!(text.contains("ip saddr 172.38.0.0/16 oifname != \"mynet\" masquerade"), "{text}");
        assert!(text.contains("delete table ip smarter-cni-mynet\n"));
        for bad in ["", "a\"b", "a b", "-x", &"n".repeat(65), "a;b"] {
            assert!(NatNet::new(bad, "br0", subnet).is_err(), "{bad:?}");
        }
        for bad in ["", "..", "br/0", "br\"0", "averyveryverylongname"] {
            assert!(NatNet::new("n", bad, subnet).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_carry_the_codes_of_docker_mode() {
        let m = PortMapping { host_port: 8080, container_port: 80, protocol: Protocol::Tcp, host_ip: None };
        let holder = Owner::new("3eaa7b224ee591edec", "iot", "holder-0").unwrap();
        let e = CniError::from(NatError::Taken { wanted: m, holder: Some(holder) });
        assert_eq!(e.code, code::ENGINE_FAILURE);
        assert_eq!(
            e.msg,
            "hostPort 8080/tcp is already held by pod iot/holder-0 (sandbox 3eaa7b224ee5): one host port serves one pod \
             per node; stop that pod or give one of them another hostPort"
        );
        let node = CniError::from(NatError::InUseOnNode { wanted: PortMapping { protocol: Protocol::Udp, host_port: 5353, ..m } });
        assert_eq!(node.code, code::ENGINE_FAILURE);
        assert!(node.msg.contains("hostPort 5353/udp is in use on the node") && node.msg.contains("ss -lnptu 'sport = :5353'"));
        assert_eq!(CniError::from(NatError::Duplicate { wanted: m }).code, code::INVALID_NETWORK_CONFIG);
    }
}

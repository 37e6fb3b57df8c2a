//! Bridge mode's kernel objects over rtnetlink: the bridge with the gateway address, one veth
//! pair per pod, and inside the pod's netns its address, default route and `lo`. One
//! synchronous socket (netlink-sys) per call; the few messages are written and read here. Work inside a pod's netns goes through a socket opened by a
//! short-lived thread that entered it (a socket keeps the netns it was made in), so the
//! caller's thread never changes namespace.

use netlink_packet_core::{
    NLA_TYPE_MASK, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::fmt;
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;

/// The pod side of a new attachment, for the CNI result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLink {
    pub mac: String,
    pub ifindex: u32,
}

/// What CHECK finds inside the pod's netns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInterface {
    pub mac: String,
    pub up: bool,
    pub ipv4: Vec<(Ipv4Addr, u8)>,
    pub default_gateway: Option<Ipv4Addr>,
}

/// FNV-1a 64: stable across builds and releases (std's hasher is not), so DEL finds the veth
/// that ADD made.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.iter().flat_map(|p| p.iter().chain(&[0u8])) {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// "sc" + 12 hex digits (48 bits of the hash): 14 bytes, within IFNAMSIZ.
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    format!("sc{:012x}", fnv1a(&[container_id.as_bytes(), ifname.as_bytes()]) & 0xffff_ffff_ffff)
}

/// A fixed, locally administered MAC for the bridge: with one set explicitly the kernel never
/// changes it to a port's address as pods come and go, so the pods' ARP entry for the gateway
/// stays valid.
fn bridge_mac(name: &str) -> Vec<u8> {
    let h = fnv1a(&[name.as_bytes()]).to_be_bytes();
    vec![0x02, h[0], h[1], h[2], h[3], h[4]]
}

fn check_ifname(name: &str) -> io::Result<()> {
    let ok = !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if ok {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("invalid interface name {name:?}: 1 to 15 bytes, no '/', ':' or whitespace, not . or .."),
    ))
}

fn check_prefix(address: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
    if (1..=32).contains(&prefix_len) {
        return Ok(());
    }
    Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid prefix length in {address}/{prefix_len}")))
}

/// Keeps `kind` (callers match on AlreadyExists / NotFound) and says which object failed.
fn ctx(e: io::Error, what: impl fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// A kernel NACK: the errno (for our own decisions) and the extended ACK text, if any.
#[derive(Debug)]
struct KernelError {
    errno: i32,
    text: Option<String>,
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let os = io::Error::from_raw_os_error(self.errno);
        match &self.text {
            Some(text) => write!(f, "{os} ({text})"),
            None => write!(f, "{os}"),
        }
    }
}

impl std::error::Error for KernelError {}

fn errno(e: &io::Error) -> i32 {
    e.get_ref().and_then(|k| k.downcast_ref::<KernelError>()).map_or(0, |k| k.errno)
}

/// An NLMSG_ERROR: `payload` is the (capped) request header, then the extended-ACK TLVs.
fn kernel_error(code: i32, flags: u16, payload: &[u8]) -> io::Error {
    let errno = code.abs();
    let skip = if flags & NLM_F_CAPPED != 0 {
        16
    } else {
        (u32_at(payload, 0) as usize).next_multiple_of(4)
    };
    let text = (flags & NLM_F_ACK_TLVS != 0)
        .then(|| payload.get(skip..))
        .flatten()
        .and_then(|tlvs| attrs(tlvs).find(|(kind, _)| *kind == 1).map(|(_, text)| cstr(text)));
    io::Error::new(io::Error::from_raw_os_error(errno).kind(), KernelError { errno, text })
}

// Messages are written and read here, with the kernel's uapi numbers: netlink-packet-route
// covers every family and link kind, and its types cost 616 KB of release binary (180 KB
// when only its link, address and route bodies were emitted); all of this module takes 39 KB.
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_INFO_SLAVE_KIND: u16 = 4;
const IFLA_INFO_SLAVE_DATA: u16 = 5;
const VETH_INFO_PEER: u16 = 1;
const IFLA_BRPORT_MODE: u16 = 4;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u8 = 254;

/// A request body: the family header, then attributes (each 4-byte aligned).
struct Body(Vec<u8>);

impl Body {
    /// ifinfomsg: family, pad, type, index, flags, change mask.
    fn link(index: u32, up: bool) -> Body {
        let up = if up { libc::IFF_UP as u32 } else { 0 };
        Body([[0u8; 4], index.to_ne_bytes(), up.to_ne_bytes(), up.to_ne_bytes()].concat())
    }

    /// ifaddrmsg: family, prefix length, flags, scope (universe), index.
    fn address(index: u32, prefix_len: u8) -> Body {
        Body([[libc::AF_INET as u8, prefix_len, 0, 0], index.to_ne_bytes()].concat())
    }

    /// rtmsg: family, dst/src length, tos, table, protocol (boot), scope (universe), type
    /// (unicast), flags.
    fn route() -> Body {
        Body(vec![libc::AF_INET as u8, 0, 0, 0, RT_TABLE_MAIN, 3, 0, 1, 0, 0, 0, 0])
    }

    fn attr(mut self, kind: u16, value: &[u8]) -> Body {
        self.0.extend_from_slice(&(4 + value.len() as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        self
    }

    fn name(self, kind: u16, name: &str) -> Body {
        self.attr(kind, &[name.as_bytes(), &[0]].concat())
    }

    fn u32(self, kind: u16, value: u32) -> Body {
        self.attr(kind, &value.to_ne_bytes())
    }

    fn nest(self, kind: u16, inner: Body) -> Body {
        self.attr(kind, &inner.0)
    }

    /// Attributes only, for the inside of a nest.
    fn attrs() -> Body {
        Body(Vec::new())
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |v| u32::from_ne_bytes([v[0], v[1], v[2], v[3]]))
}

fn cstr(b: &[u8]) -> String {
    String::from_utf8_lossy(b.split(|c| *c == 0).next().unwrap_or_default()).into_owned()
}

/// The (type, value) attributes in `b`, up to the first malformed one.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
        let kind = u16::from_ne_bytes([*b.get(2)?, *b.get(3)?]) & NLA_TYPE_MASK;
        let value = b.get(4..len)?;
        b = b.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some((kind, value))
    })
}

/// The fields of an RTM_NEWLINK (ifinfomsg: index at 4, flags at 8; attributes after 16).
#[derive(Debug, Default)]
struct Link {
    index: u32,
    up: bool,
    name: String,
    mac: String,
    mtu: u32,
    master: u32,
    kind: String,
}

impl Link {
    fn parse(p: &[u8]) -> Link {
        let mut link = Link { index: u32_at(p, 4), up: u32_at(p, 8) & libc::IFF_UP as u32 != 0, ..Link::default() };
        for (kind, v) in attrs(p.get(16..).unwrap_or_default()) {
            match kind {
                IFLA_ADDRESS => link.mac = v.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"),
                IFLA_IFNAME => link.name = cstr(v),
                IFLA_MTU => link.mtu = u32_at(v, 0),
                IFLA_MASTER => link.master = u32_at(v, 0),
                IFLA_LINKINFO => link.kind = attrs(v).find(|(k, _)| *k == IFLA_INFO_KIND).map(|(_, v)| cstr(v)).unwrap_or_default(),
                _ => {}
            }
        }
        link
    }
}

/// An RTM_NEWADDR's IPv4 IFA_LOCAL (ifaddrmsg: family 0, prefix length 1, index at 4).
fn parse_address(p: &[u8]) -> Option<(u32, Ipv4Addr, u8)> {
    let local = attrs(p.get(8..)?).find(|(k, v)| *k == IFA_LOCAL && v.len() == 4)?.1;
    (p[0] == libc::AF_INET as u8).then(|| (u32_at(p, 4), Ipv4Addr::new(local[0], local[1], local[2], local[3]), p[1]))
}

/// An IPv4 RTM_NEWROUTE in the main table to 0.0.0.0/0: (oif, gateway). rtmsg: family 0,
/// destination length 1, table 4 (RTA_TABLE overrides it); attributes after 12.
fn parse_default_route(p: &[u8]) -> Option<(u32, Ipv4Addr)> {
    let (mut table, mut oif, mut gateway) = (u32::from(*p.get(4)?), 0, None);
    for (kind, v) in attrs(p.get(12..)?) {
        match kind {
            RTA_OIF => oif = u32_at(v, 0),
            RTA_GATEWAY if v.len() == 4 => gateway = Some(Ipv4Addr::new(v[0], v[1], v[2], v[3])),
            RTA_TABLE => table = u32_at(v, 0),
            _ => {}
        }
    }
    let main = table == u32::from(RT_TABLE_MAIN);
    (p[0] == libc::AF_INET as u8 && p[1] == 0 && main).then_some((oif, gateway?))
}

struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// A socket in the current thread's netns.
    fn open() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Best effort: the kernel's reason text in errors, without the echoed request.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        Ok(Netlink { socket, seq: 0, buf: Vec::with_capacity(64 * 1024) })
    }

    /// A socket in the netns behind `netns` (an open nsfs file), made by a thread that entered it.
    fn open_in(netns: &File) -> io::Result<Netlink> {
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on a descriptor borrowed for the thread's lifetime; it moves only
                // this thread, which ends right after.
                if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                Netlink::open()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("netns thread panicked")))
        })
    }

    /// Sends one request and collects the replies up to its ACK (or, for a dump, its DONE).
    /// Any NACK becomes an error carrying the errno.
    fn request(&mut self, kind: u16, body: &Body, flags: u16) -> io::Result<Vec<(u16, Vec<u8>)>> {
        let mut out = [&[0u8; 16][..], &body.0].concat();
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        self.seq = self.seq.wrapping_add(1);
        let flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        let len = out.len() as u32;
        out[0..4].copy_from_slice(&len.to_ne_bytes());
        out[4..6].copy_from_slice(&kind.to_ne_bytes());
        out[6..8].copy_from_slice(&flags.to_ne_bytes());
        out[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        self.socket.send(&out, 0)?;
        let (mut replies, mut interrupted) = (Vec::new(), false);
        loop {
            self.buf.clear();
            let n = self.socket.recv(&mut self.buf, 0)?;
            // nlmsghdr: length 0, type 4, flags 6, sequence 8; payload after 16.
            let mut at = 0;
            while at + 16 <= n {
                let b = &self.buf[at..n];
                let len = (u32_at(b, 0) as usize).clamp(16, b.len());
                let (kind, flags) = (u16::from_ne_bytes([b[4], b[5]]), u16::from_ne_bytes([b[6], b[7]]));
                let payload = &b[16..len];
                at += len.next_multiple_of(4);
                if u32_at(b, 8) != self.seq {
                    continue; // a stale reply to an earlier request
                }
                interrupted |= flags & NLM_F_DUMP_INTR != 0;
                if kind != NLMSG_ERROR && kind != NLMSG_DONE {
                    replies.push((kind, payload.to_vec()));
                    continue;
                }
                // Both start with an errno; 0 is the ACK (or a clean end of dump).
                match u32_at(payload, 0) as i32 {
                    0 if kind == NLMSG_DONE && interrupted => {
                        return Err(io::Error::new(io::ErrorKind::Interrupted, "netlink dump interrupted"))
                    }
                    0 => return Ok(replies),
                    code if kind == NLMSG_ERROR => return Err(kernel_error(code, flags, payload.get(4..).unwrap_or_default())),
                    code => return Err(kernel_error(code, 0, &[])),
                }
            }
        }
    }

    /// A dump, retried when the kernel says it changed under us (concurrent ADDs).
    fn dump(&mut self, kind: u16, body: &Body) -> io::Result<Vec<(u16, Vec<u8>)>> {
        let mut tries = 0;
        loop {
            match self.request(kind, body, NLM_F_DUMP) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted && tries < 5 => tries += 1,
                other => return other,
            }
        }
    }

    fn link(&mut self, name: &str) -> io::Result<Option<Link>> {
        match self.request(RTM_GETLINK, &Body::link(0, false).name(IFLA_IFNAME, name), 0) {
            Ok(replies) => Ok(replies.iter().find(|(kind, _)| *kind == RTM_NEWLINK).map(|(_, p)| Link::parse(p))),
            Err(e) if errno(&e) == libc::ENODEV => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn set_up(&mut self, index: u32) -> io::Result<()> {
        self.request(RTM_SETLINK, &Body::link(index, true), 0).map(drop)
    }

    fn delete(&mut self, name: &str) -> io::Result<bool> {
        match self.request(RTM_DELLINK, &Body::link(0, false).name(IFLA_IFNAME, name), 0) {
            Ok(_) => Ok(true),
            Err(e) if errno(&e) == libc::ENODEV => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `address/prefix_len` on `index`, with the subnet's broadcast (as `ip addr add ... brd +`).
    fn add_address(&mut self, index: u32, address: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
        let mut m = Body::address(index, prefix_len).attr(IFA_LOCAL, &address.octets()).attr(IFA_ADDRESS, &address.octets());
        if prefix_len < 31 {
            let broadcast = u32::from(address) | (u32::MAX >> prefix_len);
            m = m.attr(IFA_BROADCAST, &broadcast.to_be_bytes());
        }
        self.request(RTM_NEWADDR, &m, NLM_F_CREATE | NLM_F_EXCL).map(drop)
    }

    fn addresses(&mut self, index: u32) -> io::Result<Vec<(Ipv4Addr, u8)>> {
        let replies = self.dump(RTM_GETADDR, &Body::address(0, 0))?;
        Ok(replies
            .iter()
            .filter(|(kind, _)| *kind == RTM_NEWADDR)
            .filter_map(|(_, p)| parse_address(p))
            .filter_map(|(i, ip, len)| (i == index).then_some((ip, len)))
            .collect())
    }

    fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> io::Result<()> {
        let m = Body::route().attr(RTA_GATEWAY, &gateway.octets()).u32(RTA_OIF, index);
        self.request(RTM_NEWROUTE, &m, NLM_F_CREATE | NLM_F_EXCL).map(drop)
    }

    /// The gateway of the main table's IPv4 default route through `index`.
    fn default_gateway(&mut self, index: u32) -> io::Result<Option<Ipv4Addr>> {
        let replies = self.dump(RTM_GETROUTE, &Body::route())?;
        Ok(replies
            .iter()
            .filter(|(kind, _)| *kind == RTM_NEWROUTE)
            .filter_map(|(_, p)| parse_default_route(p))
            .find_map(|(oif, gateway)| (oif == index).then_some(gateway)))
    }
}

/// The bridge's index and MTU, or an error saying what is there instead.
fn require_bridge(link: Option<&Link>, name: &str) -> io::Result<(u32, u32)> {
    let Some(link) = link else {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("bridge {name} does not exist")));
    };
    if link.kind != "bridge" {
        let what = if link.kind.is_empty() { "a device without a link kind".to_string() } else { format!("a {}", link.kind) };
        return Err(io::Error::other(format!(
            "link {name} exists but is {what}, not a bridge: remove it or configure another bridge name"
        )));
    }
    Ok((link.index, if link.mtu == 0 { 1500 } else { link.mtu }))
}

/// Creates the bridge if missing (a concurrent creator winning the race is fine), adds the
/// gateway address if missing and sets the bridge up. Refuses a link of that name that is not
/// a bridge. Returns whether anything changed.
pub fn ensure_bridge(name: &str, gateway: Ipv4Addr, prefix_len: u8) -> io::Result<bool> {
    check_ifname(name)?;
    check_prefix(gateway, prefix_len)?;
    let mut nl = Netlink::open().map_err(|e| ctx(e, "cannot open a netlink socket"))?;
    let mut changed = false;
    let mut link = nl.link(name).map_err(|e| ctx(e, format!("cannot read link {name}")))?;
    if link.is_none() {
        let m = Body::link(0, false).name(IFLA_IFNAME, name).attr(IFLA_ADDRESS, &bridge_mac(name)).nest(
            IFLA_LINKINFO,
            Body::attrs().name(IFLA_INFO_KIND, "bridge"),
        );
        match nl.request(RTM_NEWLINK, &m, NLM_F_CREATE | NLM_F_EXCL) {
            Ok(_) => changed = true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {} // a concurrent ADD won the race
            Err(e) => return Err(ctx(e, format!("cannot create bridge {name}"))),
        }
        link = nl.link(name).map_err(|e| ctx(e, format!("cannot read bridge {name}")))?;
    }
    let (index, _) = require_bridge(link.as_ref(), name)?;
    match nl.add_address(index, gateway, prefix_len) {
        Ok(()) => changed = true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(ctx(e, format!("cannot add {gateway}/{prefix_len} to bridge {name}"))),
    }
    if !link.as_ref().is_some_and(|l| l.up) {
        nl.set_up(index).map_err(|e| ctx(e, format!("cannot bring bridge {name} up")))?;
        changed = true;
    }
    Ok(changed)
}

/// For STATUS and `status`: the bridge exists, is a bridge, is up and has the gateway address;
/// otherwise a sentence saying what is wrong and what to do.
pub fn check_bridge(name: &str, gateway: Ipv4Addr, prefix_len: u8) -> Result<(), String> {
    let setup = "run `smarter-cni setup` (the next pod ADD also repairs it)";
    check_ifname(name).map_err(|e| e.to_string())?;
    let mut nl = Netlink::open().map_err(|e| format!("cannot open a netlink socket: {e}"))?;
    let link = nl.link(name).map_err(|e| format!("cannot read link {name}: {e}"))?;
    let (index, _) = require_bridge(link.as_ref(), name).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => format!("{e}: {setup}"),
        _ => e.to_string(),
    })?;
    if !link.as_ref().is_some_and(|l| l.up) {
        return Err(format!("bridge {name} is down: {setup}"));
    }
    let addresses = nl.addresses(index).map_err(|e| format!("cannot read the addresses of {name}: {e}"))?;
    if !addresses.contains(&(gateway, prefix_len)) {
        return Err(format!("bridge {name} lacks the gateway address {gateway}/{prefix_len}: {setup}"));
    }
    Ok(())
}

fn open_netns(path: &Path) -> io::Result<File> {
    if !path.is_absolute() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("network namespace path {} is not absolute", path.display())));
    }
    File::open(path).map_err(|e| ctx(e, format!("cannot open network namespace {}", path.display())))
}

/// One veth pair: `host_name` up on `bridge` with hairpin on (a pod reaches its own hostPort
/// through the node's address); the peer born inside `netns_path` as `ifname`, with
/// `address/prefix_len`, up, a default route via `gateway`, and `lo` up there. MTU = the
/// bridge's. On any failure the pair is deleted again. `ErrorKind::AlreadyExists` means only
/// that `host_name` exists already (a repeated ADD); the caller decides.
pub fn add_veth(
    bridge: &str,
    host_name: &str,
    netns_path: &Path,
    ifname: &str,
    address: Ipv4Addr,
    prefix_len: u8,
    gateway: Ipv4Addr,
) -> io::Result<PodLink> {
    for name in [bridge, host_name, ifname] {
        check_ifname(name)?;
    }
    check_prefix(address, prefix_len)?;
    let ns = netns_path.display();
    let netns = open_netns(netns_path)?;
    let mut pod = Netlink::open_in(&netns).map_err(|e| ctx(e, format!("cannot enter network namespace {ns}")))?;
    let mut nl = Netlink::open().map_err(|e| ctx(e, "cannot open a netlink socket"))?;
    let (bridge_index, mtu) = require_bridge(nl.link(bridge)?.as_ref(), bridge)?;
    let exists = || io::Error::new(io::ErrorKind::AlreadyExists, format!("host link {host_name} already exists"));
    if nl.link(host_name)?.is_some() {
        return Err(exists());
    }

    // One request: host end up and enslaved (the kernel enslaves after bringing it up), the
    // peer born in the pod's netns under its final name, so no rename or move races.
    let peer = Body::link(0, false).name(IFLA_IFNAME, ifname).u32(IFLA_MTU, mtu).u32(IFLA_NET_NS_FD, netns.as_raw_fd() as u32);
    let info = Body::attrs().name(IFLA_INFO_KIND, "veth").nest(IFLA_INFO_DATA, Body::attrs().nest(VETH_INFO_PEER, peer));
    let m = Body::link(0, true)
        .name(IFLA_IFNAME, host_name)
        .u32(IFLA_MTU, mtu)
        .u32(IFLA_MASTER, bridge_index)
        .nest(IFLA_LINKINFO, info);
    if let Err(e) = nl.request(RTM_NEWLINK, &m, NLM_F_CREATE | NLM_F_EXCL) {
        if e.kind() == io::ErrorKind::AlreadyExists {
            if nl.link(host_name)?.is_some() {
                return Err(exists()); // a concurrent repeat of this ADD
            }
            // Not AlreadyExists: the caller's "repeated ADD" path must not take this for ours.
            return Err(io::Error::other(format!("cannot create {ifname} in {ns}: a link of that name exists there")));
        }
        return Err(ctx(e, format!("cannot create veth {host_name} on {bridge} with peer {ifname} in {ns}")));
    }

    let mut configure = || -> io::Result<PodLink> {
        let host = nl.link(host_name)?.ok_or_else(|| io::Error::other(format!("{host_name} vanished")))?;
        // Hairpin: a pod reaches its own hostPort through the node's address.
        let port = Body::attrs().attr(IFLA_BRPORT_MODE, &[1]);
        let info = Body::attrs().name(IFLA_INFO_SLAVE_KIND, "bridge").nest(IFLA_INFO_SLAVE_DATA, port);
        let m = Body::link(host.index, false).nest(IFLA_LINKINFO, info);
        nl.request(RTM_NEWLINK, &m, 0).map_err(|e| ctx(e, format!("cannot set hairpin mode on {host_name}")))?;

        let lo = pod.link("lo")?.ok_or_else(|| io::Error::other(format!("no lo in {ns}")))?;
        pod.set_up(lo.index).map_err(|e| ctx(e, format!("cannot bring lo up in {ns}")))?;
        let link = pod.link(ifname)?.ok_or_else(|| io::Error::other(format!("{ifname} vanished from {ns}")))?;
        let index = link.index;
        pod.add_address(index, address, prefix_len)
            .map_err(|e| ctx(e, format!("cannot add {address}/{prefix_len} to {ifname} in {ns}")))?;
        pod.set_up(index).map_err(|e| ctx(e, format!("cannot bring {ifname} up in {ns}")))?;
        pod.add_default_route(index, gateway)
            .map_err(|e| ctx(e, format!("cannot add the default route via {gateway} to {ifname} in {ns}")))?;
        Ok(PodLink { mac: link.mac, ifindex: index })
    };
    let result = configure();
    if result.is_err() {
        // Nothing half-done: deleting the host end removes the pair.
        let _ = nl.delete(host_name);
    }
    result
}

/// Deletes a link by name (the host end takes its peer with it). Ok(false) when already gone.
pub fn delete_link(name: &str) -> io::Result<bool> {
    check_ifname(name)?;
    let mut nl = Netlink::open().map_err(|e| ctx(e, "cannot open a netlink socket"))?;
    nl.delete(name).map_err(|e| ctx(e, format!("cannot delete link {name}")))
}

/// What CHECK compares against prevResult; None when the netns file or the interface is gone.
pub fn inspect_pod_interface(netns_path: &Path, ifname: &str) -> io::Result<Option<PodInterface>> {
    check_ifname(ifname)?;
    let ns = netns_path.display();
    let netns = match open_netns(netns_path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        other => other?,
    };
    let mut pod = Netlink::open_in(&netns).map_err(|e| ctx(e, format!("cannot enter network namespace {ns}")))?;
    let Some(link) = pod.link(ifname).map_err(|e| ctx(e, format!("cannot read {ifname} in {ns}")))? else {
        return Ok(None);
    };
    let index = link.index;
    Ok(Some(PodInterface {
        mac: link.mac,
        up: link.up,
        ipv4: pod.addresses(index).map_err(|e| ctx(e, format!("cannot read the addresses in {ns}")))?,
        default_gateway: pod.default_gateway(index).map_err(|e| ctx(e, format!("cannot read the routes in {ns}")))?,
    }))
}

/// The links enslaved to the bridge (GC and `status`: veths without a lease); empty when the
/// bridge is gone.
pub fn bridge_ports(bridge: &str) -> io::Result<Vec<String>> {
    check_ifname(bridge)?;
    let mut nl = Netlink::open().map_err(|e| ctx(e, "cannot open a netlink socket"))?;
    let Some(link) = nl.link(bridge).map_err(|e| ctx(e, format!("cannot read link {bridge}")))? else {
        return Ok(Vec::new());
    };
    let (index, _) = require_bridge(Some(&link), bridge)?;
    let links = nl.dump(RTM_GETLINK, &Body::link(0, false)).map_err(|e| ctx(e, "cannot list links"))?;
    Ok(links
        .iter()
        .filter(|(kind, _)| *kind == RTM_NEWLINK)
        .map(|(_, p)| Link::parse(p))
        .filter_map(|l| (l.master == index).then_some(l.name))
        .collect())
}

/// Whether a link of that name exists in the caller's netns.
pub fn link_exists(name: &str) -> io::Result<bool> {
    check_ifname(name)?;
    let mut nl = Netlink::open().map_err(|e| ctx(e, "cannot open a netlink socket"))?;
    Ok(nl.link(name).map_err(|e| ctx(e, format!("cannot read link {name}")))?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_names_are_stable_and_short() {
        let a = host_veth_name("0123456789abcdef", "eth0");
        assert_eq!(a, host_veth_name("0123456789abcdef", "eth0"));
        assert_eq!(a.len(), 14);
        assert!(a.starts_with("sc") && a[2..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, host_veth_name("0123456789abcdef", "eth1"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(host_veth_name("ab", "c"), host_veth_name("a", "bc"));
        check_ifname(&a).unwrap();
    }

    #[test]
    fn what_is_written_reads_back() {
        let info = Body::attrs().name(IFLA_INFO_KIND, "veth").nest(IFLA_INFO_DATA, Body::attrs().u32(9, 1));
        let body = Body::link(7, true).name(IFLA_IFNAME, "eth0").u32(IFLA_MTU, 1400).attr(IFLA_ADDRESS, &[2, 0, 0, 0, 0, 0xab]);
        let link = Link::parse(&body.u32(IFLA_MASTER, 3).nest(IFLA_LINKINFO, info).0);
        assert_eq!((link.index, link.up, link.name.as_str(), link.mtu, link.master), (7, true, "eth0", 1400, 3));
        assert_eq!((link.mac.as_str(), link.kind.as_str()), ("02:00:00:00:00:ab", "veth"));
        // A truncated attribute ends the walk instead of reading past the buffer.
        assert_eq!(attrs(&[8, 0, 3, 0, b'e']).count(), 0);
    }

    #[test]
    fn names_are_validated() {
        for bad in ["", ".", "..", "a/b", "a b", "a:b", "sixteen-bytes-xx", "tab\t"] {
            assert_eq!(check_ifname(bad).unwrap_err().kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        for good in ["eth0", "mynet", "fifteen-bytes-x", "a.b-c_d"] {
            check_ifname(good).unwrap();
        }
    }
}

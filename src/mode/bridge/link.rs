//! Bridge mode's kernel objects over rtnetlink: the bridge with the gateway address, one veth
//! pair per pod, and inside the pod's netns its address, default route and `lo`. One
//! synchronous socket per call. Work inside a pod's netns goes through a socket opened by a
//! short-lived thread that entered it (a socket keeps the netns it was made in), so the
//! caller's thread never changes namespace.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator, NLM_F_ACK, NLM_F_ACK_TLVS,
    NLM_F_CAPPED, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::fmt;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
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
        payload.get(..4).map_or(0, |l| (u32::from_ne_bytes([l[0], l[1], l[2], l[3]]) as usize + 3) & !3)
    };
    let text = (flags & NLM_F_ACK_TLVS != 0)
        .then(|| payload.get(skip..))
        .flatten()
        .and_then(|tlvs| {
            NlasIterator::new(tlvs).filter_map(Result::ok).find(|nla| nla.kind() == 1).map(|nla| {
                String::from_utf8_lossy(nla.value()).trim_end_matches('\0').to_string()
            })
        });
    io::Error::new(io::Error::from_raw_os_error(errno).kind(), KernelError { errno, text })
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
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<RouteNetlinkMessage>> {
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket.send(&out, 0)?;
        let (mut replies, mut interrupted) = (Vec::new(), false);
        loop {
            self.buf.clear();
            let n = self.socket.recv(&mut self.buf, 0)?;
            let mut at = 0;
            while at < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[at..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad netlink reply: {e}")))?;
                at += (msg.header.length as usize).max(16).next_multiple_of(4);
                if msg.header.sequence_number != self.seq {
                    continue; // a stale reply to an earlier request
                }
                interrupted |= msg.header.flags & NLM_F_DUMP_INTR != 0;
                match msg.payload {
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    NetlinkPayload::Error(e) => match e.code {
                        None => return Ok(replies),
                        Some(code) => return Err(kernel_error(code.get(), msg.header.flags, &e.header)),
                    },
                    NetlinkPayload::Done(d) if d.code != 0 => return Err(kernel_error(d.code, 0, &[])),
                    NetlinkPayload::Done(_) if interrupted => {
                        return Err(io::Error::new(io::ErrorKind::Interrupted, "netlink dump interrupted"))
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    _ => {}
                }
            }
        }
    }

    /// A dump, retried when the kernel says it changed under us (concurrent ADDs).
    fn dump(&mut self, msg: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut tries = 0;
        loop {
            match self.request(msg.clone(), NLM_F_DUMP) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted && tries < 5 => tries += 1,
                other => return other,
            }
        }
    }

    fn link(&mut self, name: &str) -> io::Result<Option<LinkMessage>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(m), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })),
            Err(e) if errno(&e) == libc::ENODEV => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn set_up(&mut self, index: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(m), 0).map(drop)
    }

    fn delete(&mut self, name: &str) -> io::Result<bool> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::DelLink(m), 0) {
            Ok(_) => Ok(true),
            Err(e) if errno(&e) == libc::ENODEV => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `address/prefix_len` on `index`, with the subnet's broadcast (as `ip addr add ... brd +`).
    fn add_address(&mut self, index: u32, address: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix_len;
        m.header.scope = AddressScope::Universe;
        m.header.index = index;
        m.attributes = vec![AddressAttribute::Local(address.into()), AddressAttribute::Address(address.into())];
        if prefix_len < 31 {
            let broadcast = u32::from(address) | (u32::MAX >> prefix_len);
            m.attributes.push(AddressAttribute::Broadcast(broadcast.into()));
        }
        self.request(RouteNetlinkMessage::NewAddress(m), NLM_F_CREATE | NLM_F_EXCL).map(drop)
    }

    fn addresses(&mut self, index: u32) -> io::Result<Vec<(Ipv4Addr, u8)>> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        let replies = self.dump(RouteNetlinkMessage::GetAddress(m))?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    a.attributes.iter().find_map(|at| match at {
                        AddressAttribute::Local(IpAddr::V4(ip)) => Some((*ip, a.header.prefix_len)),
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> io::Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes = vec![RouteAttribute::Gateway(RouteAddress::Inet(gateway)), RouteAttribute::Oif(index)];
        self.request(RouteNetlinkMessage::NewRoute(m), NLM_F_CREATE | NLM_F_EXCL).map(drop)
    }

    /// The gateway of the main table's IPv4 default route through `index`.
    fn default_gateway(&mut self, index: u32) -> io::Result<Option<Ipv4Addr>> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        let replies = self.dump(RouteNetlinkMessage::GetRoute(m))?;
        Ok(replies.into_iter().find_map(|r| match r {
            RouteNetlinkMessage::NewRoute(r)
                if r.header.table == RouteHeader::RT_TABLE_MAIN
                    && r.header.destination_prefix_length == 0
                    && r.attributes.contains(&RouteAttribute::Oif(index)) =>
            {
                r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(RouteAddress::Inet(gw)) => Some(*gw),
                    _ => None,
                })
            }
            _ => None,
        }))
    }
}

fn kind(link: &LinkMessage) -> Option<&InfoKind> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k),
            _ => None,
        }),
        _ => None,
    })
}

fn is_up(link: &LinkMessage) -> bool {
    link.header.flags.contains(LinkFlags::Up)
}

fn mac(link: &LinkMessage) -> String {
    let bytes = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(b) => Some(b.as_slice()),
        _ => None,
    });
    bytes.unwrap_or_default().iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The bridge's index and MTU, or an error saying what is there instead.
fn require_bridge(link: Option<&LinkMessage>, name: &str) -> io::Result<(u32, u32)> {
    let Some(link) = link else {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("bridge {name} does not exist")));
    };
    match kind(link) {
        Some(InfoKind::Bridge) => {}
        other => {
            let what = other.map_or("a device without a link kind".to_string(), |k| format!("a {k}"));
            return Err(io::Error::other(format!(
                "link {name} exists but is {what}, not a bridge: remove it or configure another bridge name"
            )));
        }
    }
    let mtu = link.attributes.iter().find_map(|a| if let LinkAttribute::Mtu(m) = a { Some(*m) } else { None });
    Ok((link.header.index, mtu.unwrap_or(1500)))
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
        let mut m = LinkMessage::default();
        m.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::Address(bridge_mac(name)),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ];
        match nl.request(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL) {
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
    if !link.as_ref().is_some_and(is_up) {
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
    if !link.as_ref().is_some_and(is_up) {
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
    let mut peer = LinkMessage::default();
    peer.attributes = vec![
        LinkAttribute::IfName(ifname.to_string()),
        LinkAttribute::Mtu(mtu),
        LinkAttribute::NetNsFd(netns.as_raw_fd()),
    ];
    let mut m = LinkMessage::default();
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    m.attributes = vec![
        LinkAttribute::IfName(host_name.to_string()),
        LinkAttribute::Mtu(mtu),
        LinkAttribute::Controller(bridge_index),
        LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Veth), LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer)))]),
    ];
    if let Err(e) = nl.request(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL) {
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
        let mut m = LinkMessage::default();
        m.header.index = host.header.index;
        m.attributes = vec![LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(true)])),
        ])];
        nl.request(RouteNetlinkMessage::NewLink(m), 0).map_err(|e| ctx(e, format!("cannot set hairpin mode on {host_name}")))?;

        let lo = pod.link("lo")?.ok_or_else(|| io::Error::other(format!("no lo in {ns}")))?;
        pod.set_up(lo.header.index).map_err(|e| ctx(e, format!("cannot bring lo up in {ns}")))?;
        let link = pod.link(ifname)?.ok_or_else(|| io::Error::other(format!("{ifname} vanished from {ns}")))?;
        let index = link.header.index;
        pod.add_address(index, address, prefix_len)
            .map_err(|e| ctx(e, format!("cannot add {address}/{prefix_len} to {ifname} in {ns}")))?;
        pod.set_up(index).map_err(|e| ctx(e, format!("cannot bring {ifname} up in {ns}")))?;
        pod.add_default_route(index, gateway)
            .map_err(|e| ctx(e, format!("cannot add the default route via {gateway} to {ifname} in {ns}")))?;
        Ok(PodLink { mac: mac(&link), ifindex: index })
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
    let index = link.header.index;
    Ok(Some(PodInterface {
        mac: mac(&link),
        up: is_up(&link),
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
    let links = nl.dump(RouteNetlinkMessage::GetLink(LinkMessage::default())).map_err(|e| ctx(e, "cannot list links"))?;
    Ok(links
        .into_iter()
        .filter_map(|r| match r {
            RouteNetlinkMessage::NewLink(l) if l.attributes.contains(&LinkAttribute::Controller(index)) => {
                l.attributes.into_iter().find_map(|a| if let LinkAttribute::IfName(n) = a { Some(n) } else { None })
            }
            _ => None,
        })
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
    fn names_are_validated() {
        for bad in ["", ".", "..", "a/b", "a b", "a:b", "sixteen-bytes-xx", "tab\t"] {
            assert_eq!(check_ifname(bad).unwrap_err().kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        for good in ["eth0", "mynet", "fifteen-bytes-x", "a.b-c_d"] {
            check_ifname(good).unwrap();
        }
    }
}

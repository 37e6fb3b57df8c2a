//! Bridge mode egress and hostPorts on the real kernel and real nftables. Each test builds
//! its own node as a network namespace (so Docker's FORWARD drop policy and other tests'
//! tables on this machine never interfere), with a bridge and gateway address, a pod on a
//! veth, a "LAN host" behind the node's LAN interface and an "internet" host behind another
//! interface that has no route back to the pods. Traffic is real TCP and UDP from in-process
//! servers that answer with the peer address they saw.

use smarter_cni::ipv4::Ipv4Net;
use smarter_cni::mode::bridge::nat::{self, NatError, NatNet, Owner, PortMapping, Protocol};
mod traffic;

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use traffic::{in_ns, seen, tcp_from, udp_from, Echo};
use std::process::Command;
use std::time::Duration;

const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const POD: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const NODE_LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const NODE_LAN2: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 3);
const LAN_HOST: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
const NODE_UPLINK: Ipv4Addr = Ipv4Addr::new(198, 18, 77, 1);
const INTERNET_HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 77, 2);
const SHORT: Duration = Duration::from_millis(700);

fn ip(args: &str) {
    let out = Command::new("ip").args(args.split_whitespace()).output().expect("ip");
    assert!(out.status.success(), "ip {args}: {}", String::from_utf8_lossy(&out.stderr));
}

fn nft_in(ns: &str, args: &str) -> String {
    let out = Command::new("ip").args(["netns", "exec", ns, "nft"]).args(args.split_whitespace()).output().expect("nft");
    assert!(out.status.success(), "nft {args}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The node, pod, LAN host and internet host namespaces; removed on drop.
struct Topology {
    node: String,
    pod: String,
    lan: String,
    inet: String,
    net: NatNet,
}

impl Topology {
    fn new(tag: &str) -> Topology {
        let prefix = format!("bnat-{tag}-{}", std::process::id());
        let t = Topology {
            node: format!("{prefix}-node"),
            pod: format!("{prefix}-pod"),
            lan: format!("{prefix}-lan"),
            inet: format!("{prefix}-inet"),
            net: NatNet::new(&format!("t-{tag}-{}", std::process::id()), "br0", "10.77.0.0/24".parse::<Ipv4Net>().unwrap()).unwrap(),
        };
        for ns in [&t.node, &t.pod, &t.lan, &t.inet] {
            ip(&format!("netns add {ns}"));
            ip(&format!("-n {ns} link set lo up"));
        }
        let (n, p, l, i) = (&t.node, &t.pod, &t.lan, &t.inet);
        ip(&format!("-n {n} link add br0 type bridge"));
        ip(&format!("-n {n} addr add {GATEWAY}/24 dev br0"));
        ip(&format!("-n {n} link set br0 up"));
        ip(&format!("-n {n} link add vpod type veth peer name eth0 netns {p}"));
        // Hairpin mode on the pod's port, as the bridge-mode link code sets it: with
        // br_netfilter loaded (bridge-nf-call-iptables=1, Docker and k3s nodes) a pod's
        // packet to its own hostPort is DNATed at the bridge and sent back out its port.
        ip(&format!("-n {n} link set vpod master br0 up"));
        ip(&format!("-n {n} link set vpod type bridge_slave hairpin on"));
        ip(&format!("-n {p} addr add {POD}/24 dev eth0"));
        ip(&format!("-n {p} link set eth0 up"));
        ip(&format!("-n {p} route add default via {GATEWAY}"));
        ip(&format!("-n {n} link add lan0 type veth peer name eth0 netns {l}"));
        ip(&format!("-n {n} addr add {NODE_LAN}/24 dev lan0"));
        ip(&format!("-n {n} addr add {NODE_LAN2}/24 dev lan0"));
        ip(&format!("-n {n} link set lan0 up"));
        ip(&format!("-n {l} addr add {LAN_HOST}/24 dev eth0"));
        ip(&format!("-n {l} link set eth0 up"));
        ip(&format!("-n {n} link add up0 type veth peer name eth0 netns {i}"));
        ip(&format!("-n {n} addr add {NODE_UPLINK}/24 dev up0"));
        ip(&format!("-n {n} link set up0 up"));
        ip(&format!("-n {i} addr add {INTERNET_HOST}/24 dev eth0"));
        ip(&format!("-n {i} link set eth0 up"));
        t
    }

    /// What `setup` does for the network.
    fn setup(&self) {
        in_ns(&self.node, || {
            nat::ensure_forwarding(&self.net).unwrap();
            nat::load_base_ruleset(&self.net).unwrap();
        });
    }

    fn node<T: Send>(&self, f: impl FnOnce(&NatNet) -> T + Send) -> T {
        in_ns(&self.node, || f(&self.net))
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.node, &self.pod, &self.lan, &self.inet] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn mapping(host_port: u16, container_port: u16, protocol: Protocol, host_ip: Option<Ipv4Addr>) -> PortMapping {
    PortMapping { host_port, container_port, protocol, host_ip }
}

fn owner(id: &str, pod: &str) -> Owner {
    Owner::new(id, "iot", pod).unwrap()
}

#[test]
fn pods_reach_the_internet_through_masquerade() {
    let t = Topology::new("masq");
    let _internet = Echo::start(&t.inet, "inet", 7, 7);
    assert!(tcp_from(&t.pod, (INTERNET_HOST, 7)).is_err(), "without the rules the internet host cannot answer the pod");
    t.setup();
    assert_eq!(seen(tcp_from(&t.pod, (INTERNET_HOST, 7))), ("inet".into(), NODE_UPLINK), "the node's uplink address is the source");
    assert_eq!(seen(udp_from(&t.pod, (INTERNET_HOST, 7))), ("inet".into(), NODE_UPLINK));
    // The LAN is "every other interface" too; the node itself sees the pod as it is.
    let _lan = Echo::start(&t.lan, "lan", 7, 7);
    assert_eq!(seen(tcp_from(&t.pod, (LAN_HOST, 7))), ("lan".into(), NODE_LAN));
    let _node = Echo::start(&t.node, "node", 7, 7);
    assert_eq!(seen(tcp_from(&t.pod, (GATEWAY, 7))), ("node".into(), POD), "no masquerade towards the node");
    t.node(nat::check_base_ruleset).unwrap();
}

#[test]
fn host_ports_answer_from_the_lan_the_node_and_the_pod_itself() {
    let t = Topology::new("hp");
    t.setup();
    let _pod = Echo::start(&t.pod, "pod", 80, 5353);
    let web = mapping(8080, 80, Protocol::Tcp, None);
    let dns = mapping(5353, 5353, Protocol::Udp, None);
    assert!(tcp_from(&t.lan, (NODE_LAN, 8080)).is_err(), "nothing answers before the mapping");
    t.node(|net| nat::add_port_mappings(net, POD, &owner("sandbox-a", "web-0"), &[web, dns])).unwrap();

    assert_eq!(seen(tcp_from(&t.lan, (NODE_LAN, 8080))), ("pod".into(), LAN_HOST), "the pod sees the LAN client");
    assert_eq!(seen(udp_from(&t.lan, (NODE_LAN, 5353))), ("pod".into(), LAN_HOST));
    assert_eq!(seen(tcp_from(&t.lan, (NODE_LAN2, 8080))).0, "pod", "every node address");
    // From the node: its LAN address, the gateway address and 127.0.0.1 (route_localnet).
    assert_eq!(seen(tcp_from(&t.node, (NODE_LAN, 8080))).0, "pod");
    assert_eq!(seen(tcp_from(&t.node, (GATEWAY, 8080))).0, "pod");
    assert_eq!(seen(tcp_from(&t.node, (Ipv4Addr::LOCALHOST, 8080))), ("pod".into(), GATEWAY));
    assert_eq!(seen(udp_from(&t.node, (Ipv4Addr::LOCALHOST, 5353))), ("pod".into(), GATEWAY));
    // Hairpin: the pod reaches its own hostPort through the node's address, both when
    // bridged frames pass through IP netfilter (br_netfilter) and when they do not.
    for call_iptables in ["1", "0"] {
        let knob = "/proc/sys/net/bridge/bridge-nf-call-iptables";
        if std::path::Path::new(knob).exists() {
            in_ns(&t.node, || std::fs::write(knob, call_iptables).unwrap());
        }
        assert_eq!(seen(tcp_from(&t.pod, (NODE_LAN, 8080))), ("pod".into(), GATEWAY), "bridge-nf-call-iptables={call_iptables}");
        assert_eq!(seen(udp_from(&t.pod, (NODE_LAN, 5353))), ("pod".into(), GATEWAY));
    }
    // Removed: nothing answers any more, on any path.
    assert_eq!(t.node(|net| nat::remove_port_mappings(net, "sandbox-a")).unwrap(), 2);
    assert!(tcp_from(&t.lan, (NODE_LAN, 8080)).is_err());
    assert!(udp_from(&t.lan, (NODE_LAN, 5353)).is_err());
    assert!(tcp_from(&t.node, (Ipv4Addr::LOCALHOST, 8080)).is_err());
}

#[test]
fn pods_cannot_reach_the_node_loopback_through_route_localnet() {
    let t = Topology::new("guard");
    t.setup();
    // A pod that routes 127.0.0.0/8 to the gateway (its own loopback routes removed) sends
    // a datagram to a node service that listens on 127.0.0.1 only.
    ip(&format!("-n {} route del local 127.0.0.0/8 dev lo table local", t.pod));
    ip(&format!("-n {} route del local 127.0.0.1 dev lo table local", t.pod));
    ip(&format!("-n {} route add 127.0.0.0/8 via {GATEWAY} dev eth0", t.pod));
    let node_service = in_ns(&t.node, || UdpSocket::bind("127.0.0.1:9999").unwrap());
    node_service.set_read_timeout(Some(SHORT)).unwrap();
    let reaches = || {
        in_ns(&t.pod, || UdpSocket::bind("0.0.0.0:0").unwrap().send_to(b"x", "127.0.0.1:9999").unwrap());
        node_service.recv_from(&mut [0u8; 8]).is_ok()
    };
    assert!(!reaches(), "the guard drops it");
    nft_in(&t.node, &format!("flush chain ip {} guard", t.net.table()));
    assert!(reaches(), "control: without the guard the pod reaches the node's loopback");
}

#[test]
fn host_ip_mappings_answer_only_on_that_address() {
    let t = Topology::new("hostip");
    t.setup();
    let _pod = Echo::start(&t.pod, "pod", 80, 53);
    let only = [mapping(9090, 80, Protocol::Tcp, Some(NODE_LAN2)), mapping(9053, 53, Protocol::Udp, Some(NODE_LAN2))];
    t.node(|net| nat::add_port_mappings(net, POD, &owner("sandbox-b", "web-1"), &only)).unwrap();
    assert_eq!(seen(tcp_from(&t.lan, (NODE_LAN2, 9090))).0, "pod");
    assert_eq!(seen(udp_from(&t.lan, (NODE_LAN2, 9053))).0, "pod");
    assert!(tcp_from(&t.lan, (NODE_LAN, 9090)).is_err(), "not on the node's other address");
    assert!(udp_from(&t.lan, (NODE_LAN, 9053)).is_err());
    // Another pod may have the same port on another address, not on every address.
    let other = owner("sandbox-c", "web-2");
    t.node(|net| nat::add_port_mappings(net, POD, &other, &[mapping(9090, 80, Protocol::Tcp, Some(NODE_LAN))])).unwrap();
    let err = t.node(|net| nat::add_port_mappings(net, POD, &owner("sandbox-d", "web-3"), &[mapping(9090, 80, Protocol::Tcp, None)]));
    assert!(matches!(&err, Err(NatError::Taken { holder: Some(h), .. }) if h.pod == "web-1" || h.pod == "web-2"), "{err:?}");
    let listed = t.node(nat::list_port_mappings).unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed.contains(&(only[0], POD, owner("sandbox-b", "web-1"))));
}

#[test]
fn a_taken_port_names_its_pod_and_leaves_nothing_behind() {
    let t = Topology::new("taken");
    t.setup();
    let holder = owner("3eaa7b224ee591edec0000", "holder-0");
    let web = mapping(8080, 80, Protocol::Tcp, None);
    t.node(|net| nat::add_port_mappings(net, POD, &holder, &[web])).unwrap();
    let before = nft_in(&t.node, &format!("list table ip {}", t.net.table()));
    let second = owner("second", "second-0");
    let wants = [mapping(9999, 99, Protocol::Udp, None), mapping(8080, 80, Protocol::Tcp, Some(NODE_LAN))];
    let err = t.node(|net| nat::add_port_mappings(net, Ipv4Addr::new(10, 77, 0, 3), &second, &wants)).unwrap_err();
    let cni = smarter_cni::cni::CniError::from(err);
    assert_eq!(cni.code, 100);
    assert_eq!(
        cni.msg,
        "hostPort 192.168.77.1:8080/tcp is already held by pod iot/holder-0 (sandbox 3eaa7b224ee5): one host port serves \
         one pod per node; stop that pod or give one of them another hostPort"
    );
    assert_eq!(nft_in(&t.node, &format!("list table ip {}", t.net.table())), before, "nothing of the failed pod is left");
    // The same port on UDP is another port.
    t.node(|net| nat::add_port_mappings(net, POD, &second, &[mapping(8080, 80, Protocol::Udp, None)])).unwrap();
    // A node process that listens there, and a hostIP that is not the node's.
    let _listener = in_ns(&t.node, || TcpListener::bind("0.0.0.0:7777").unwrap());
    let err = t.node(|net| nat::add_port_mappings(net, POD, &owner("third", "x"), &[mapping(7777, 80, Protocol::Tcp, None)]));
    let msg = smarter_cni::cni::CniError::from(err.unwrap_err()).msg;
    assert!(msg.contains("hostPort 7777/tcp is in use on the node") && msg.contains("ss -lnptu"), "{msg}");
    let err = t.node(|net| nat::add_port_mappings(net, POD, &owner("third", "x"), &[mapping(80, 80, Protocol::Tcp, Some(Ipv4Addr::new(192, 0, 2, 99)))]));
    assert!(matches!(err, Err(NatError::NotLocal { .. })), "{err:?}");
    let err = t.node(|net| nat::add_port_mappings(net, POD, &owner("third", "x"), &[mapping(81, 80, Protocol::Tcp, None), mapping(81, 81, Protocol::Tcp, None)]));
    assert!(matches!(err, Err(NatError::Duplicate { .. })), "{err:?}");
    assert_eq!(t.node(nat::list_port_mappings).unwrap().len(), 2);
}

#[test]
fn a_repeated_add_replaces_and_remove_is_idempotent() {
    let t = Topology::new("again");
    t.setup();
    let _pod = Echo::start(&t.pod, "pod", 80, 81);
    let a = owner("sandbox-a", "web-0");
    let first = [mapping(8080, 80, Protocol::Tcp, None), mapping(8081, 81, Protocol::Udp, None)];
    t.node(|net| nat::add_port_mappings(net, POD, &a, &first)).unwrap();
    t.node(|net| nat::add_port_mappings(net, POD, &a, &first)).unwrap();
    assert_eq!(t.node(nat::list_port_mappings).unwrap().len(), 2, "no duplicates");
    let changed = [mapping(8080, 81, Protocol::Tcp, None)];
    t.node(|net| nat::add_port_mappings(net, POD, &a, &changed)).unwrap();
    assert_eq!(t.node(nat::list_port_mappings).unwrap(), vec![(changed[0], POD, a.clone())]);
    assert_eq!(t.node(|net| nat::remove_port_mappings(net, "sandbox-a")).unwrap(), 1);
    assert_eq!(t.node(|net| nat::remove_port_mappings(net, "sandbox-a")).unwrap(), 0);
    assert_eq!(t.node(|net| nat::remove_port_mappings(net, "never-added")).unwrap(), 0);
    nft_in(&t.node, &format!("delete table ip {}", t.net.table()));
    assert_eq!(t.node(|net| nat::remove_port_mappings(net, "sandbox-a")).unwrap(), 0, "no table is nothing to remove");
    let err = t.node(|net| nat::add_port_mappings(net, POD, &a, &first)).unwrap_err();
    let cni = smarter_cni::cni::CniError::from(err);
    assert_eq!(cni.code, 11);
    assert!(cni.msg.contains("run `smarter-cni setup`"), "{}", cni.msg);
}

#[test]
fn setup_is_idempotent_and_keeps_running_pods_host_ports() {
    let t = Topology::new("setup");
    t.setup();
    let a = owner("sandbox-a", "web-0");
    t.node(|net| nat::add_port_mappings(net, POD, &a, &[mapping(8080, 80, Protocol::Tcp, None)])).unwrap();
    let once = nft_in(&t.node, "list ruleset");
    t.setup();
    t.setup();
    assert_eq!(nft_in(&t.node, "list ruleset"), once, "same rules, no duplicates, elements kept");
    assert_eq!(nft_in(&t.node, "list tables").lines().count(), 1);
    assert!(once.contains("comment \"sandbox-a iot/web-0\""), "the owner shows in `nft list`: {once}");
    t.node(nat::check_base_ruleset).unwrap();

    // A chain removed by hand, then another configuration: STATUS sees both, setup repairs.
    nft_in(&t.node, &format!("delete chain ip {} output", t.net.table()));
    let err = t.node(nat::check_base_ruleset).unwrap_err();
    assert!(err.contains("chain output"), "{err}");
    t.setup();
    t.node(nat::check_base_ruleset).unwrap();
    let moved = NatNet::new(&format!("t-setup-{}", std::process::id()), "br0", "10.78.0.0/24".parse().unwrap()).unwrap();
    let err = t.node(|_| nat::check_base_ruleset(&moved)).unwrap_err();
    assert!(err.contains("another configuration"), "{err}");
    t.node(|_| nat::load_base_ruleset(&moved)).unwrap();
    t.node(|_| nat::check_base_ruleset(&moved)).unwrap();
    assert!(t.node(|_| nat::list_port_mappings(&moved)).unwrap().is_empty(), "a new subnet starts empty");
    assert!(nft_in(&t.node, "list ruleset").contains("ip saddr 10.78.0.0/24 oifname != \"br0\" masquerade"));
    nft_in(&t.node, &format!("delete table ip {}", t.net.table()));
    let err = t.node(nat::check_base_ruleset).unwrap_err();
    assert!(err.contains("is missing"), "{err}");
}

#[test]
fn concurrent_adds_of_one_port_have_exactly_one_winner() {
    let t = Topology::new("race");
    t.setup();
    let results: Vec<Result<(), NatError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let t = &t;
                s.spawn(move || {
                    let wants = [mapping(10000 + i, 80, Protocol::Tcp, None), mapping(8080, 80, Protocol::Tcp, None)];
                    t.node(|net| nat::add_port_mappings(net, POD, &owner(&format!("sandbox-{i}"), &format!("web-{i}")), &wants))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert!(results.iter().all(|r| matches!(r, Ok(()) | Err(NatError::Taken { .. }))), "{results:?}");
    assert_eq!(t.node(nat::list_port_mappings).unwrap().len(), 2, "only the winner's two");
}

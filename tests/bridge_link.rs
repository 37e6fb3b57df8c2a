//! Bridge mode's netlink layer against the real kernel. Each test makes its own "node" netns
//! and runs the module from a thread inside it, so its bridge, veths and addresses never meet
//! the host's (Docker's FORWARD drop policy, other agents' bridges); pods are netns made with
//! `ip netns add`. Deleting the netns (Drop guards) removes everything a test made.

use serde_json::Value;
use smarter_cni::mode::bridge::link::{self, PodInterface};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A netns from `ip netns add`, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("lk-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run(&["ip", "netns", "add", &name]);
        Netns(name)
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/netns/{}", self.0))
    }

    /// Runs `f` on a thread inside this netns (the module acts in its caller's netns).
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let file = std::fs::File::open(self.path()).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                assert_eq!(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    fn ip(&self, args: &[&str]) -> String {
        run(&[&["ip", "-n", &self.0], args].concat())
    }

    fn ip_json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ip(&[&["-j", "-d"], args].concat())).unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn ok(args: &[&str]) -> bool {
    Command::new(args[0]).args(&args[1..]).output().unwrap().status.success()
}

const GW: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

#[test]
fn bridge_is_created_once_under_a_race_and_repaired() {
    let node = Netns::new("race");
    let changed = node.run(|| {
        // New threads start in their creator's netns: all 8 race in the node's.
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| link::ensure_bridge("mynet", GW, 16))).collect();
            handles.into_iter().map(|h| h.join().unwrap().unwrap()).filter(|c| *c).count()
        })
    });
    assert!(changed >= 1, "someone created it");
    let detail = &node.ip_json(&["link", "show", "mynet"])[0];
    assert_eq!(detail["linkinfo"]["info_kind"], "bridge");
    assert!(detail["flags"].as_array().unwrap().contains(&"UP".into()));
    let addrs = node.ip_json(&["addr", "show", "mynet"]);
    let inet: Vec<_> = addrs[0]["addr_info"].as_array().unwrap().iter().filter(|a| a["family"] == "inet").collect();
    assert_eq!(inet.len(), 1, "one gateway address despite 8 racers: {inet:?}");
    assert_eq!((inet[0]["local"].as_str(), inet[0]["prefixlen"].as_u64()), (Some("10.77.0.1"), Some(16)));
    assert_eq!(inet[0]["broadcast"], "10.77.255.255");

    node.run(|| {
        assert!(!link::ensure_bridge("mynet", GW, 16).unwrap(), "idempotent");
        link::check_bridge("mynet", GW, 16).unwrap();
    });
    node.ip(&["link", "set", "mynet", "down"]);
    node.run(|| {
        assert!(link::check_bridge("mynet", GW, 16).unwrap_err().contains("is down"));
        assert!(link::ensure_bridge("mynet", GW, 16).unwrap());
        link::check_bridge("mynet", GW, 16).unwrap();
    });
    node.ip(&["addr", "del", "10.77.0.1/16", "dev", "mynet"]);
    node.run(|| {
        let e = link::check_bridge("mynet", GW, 16).unwrap_err();
        assert!(e.contains("lacks the gateway address 10.77.0.1/16"), "{e}");
        assert!(link::ensure_bridge("mynet", GW, 16).unwrap());
        link::check_bridge("mynet", GW, 16).unwrap();
        assert!(link::delete_link("mynet").unwrap());
        let e = link::check_bridge("mynet", GW, 16).unwrap_err();
        assert!(e.contains("does not exist") && e.contains("smarter-cni setup"), "{e}");
        assert_eq!(link::bridge_ports("mynet").unwrap(), Vec::<String>::new());
    });
}

#[test]
fn a_non_bridge_of_that_name_is_refused() {
    let node = Netns::new("nonbr");
    node.ip(&["link", "add", "mynet", "type", "veth", "peer", "name", "mynet-peer"]);
    let pod = Netns::new("nonbr-pod");
    node.run(|| {
        let e = link::ensure_bridge("mynet", GW, 16).unwrap_err();
        assert!(e.to_string().contains("link mynet exists but is a veth, not a bridge"), "{e}");
        assert!(link::check_bridge("mynet", GW, 16).unwrap_err().contains("not a bridge"));
        let e = link::add_veth("mynet", "scx", &pod.path(), "eth0", Ipv4Addr::new(10, 77, 0, 5), 16, GW).unwrap_err();
        assert!(e.to_string().contains("not a bridge"), "{e}");
        assert!(!link::link_exists("scx").unwrap());
        assert_eq!(link::ensure_bridge("bad/name", GW, 16).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    });
    assert!(node.ip_json(&["addr", "show", "mynet"])[0]["addr_info"].as_array().unwrap().is_empty(), "left untouched");
}

#[test]
fn veth_into_a_fresh_netns_then_checked_from_inside_and_deleted_twice() {
    let node = Netns::new("veth");
    let pod = Netns::new("veth-pod");
    let host = link::host_veth_name("c0ffee", "eth0");
    let addr = Ipv4Addr::new(10, 77, 0, 5);
    let got = node.run(|| {
        link::ensure_bridge("mynet", GW, 16).unwrap();
        link::add_veth("mynet", &host, &pod.path(), "eth0", addr, 16, GW).unwrap()
    });
    assert!(got.mac.len() == 17 && got.mac != "00:00:00:00:00:00", "{got:?}");

    // What the kernel says, read by iproute2 rather than by the module.
    let l = &pod.ip_json(&["link", "show", "eth0"])[0];
    assert_eq!(l["address"], got.mac.as_str());
    assert_eq!(l["ifindex"].as_u64(), Some(u64::from(got.ifindex)));
    assert!(l["flags"].as_array().unwrap().contains(&"UP".into()));
    assert!(pod.ip_json(&["link", "show", "lo"])[0]["flags"].as_array().unwrap().contains(&"UP".into()));
    let a = &pod.ip_json(&["addr", "show", "eth0"])[0]["addr_info"];
    assert!(a.as_array().unwrap().iter().any(|a| a["local"] == "10.77.0.5" && a["prefixlen"] == 16), "{a}");
    let routes = pod.ip_json(&["route", "show", "default"]);
    assert_eq!((routes[0]["gateway"].as_str(), routes[0]["dev"].as_str()), (Some("10.77.0.1"), Some("eth0")), "{routes}");
    let h = &node.ip_json(&["link", "show", &host])[0];
    assert_eq!(h["master"], "mynet");
    assert!(h["flags"].as_array().unwrap().contains(&"UP".into()));
    assert_eq!(h["linkinfo"]["info_slave_data"]["hairpin"], true, "{h}");
    assert_eq!(h["mtu"], node.ip_json(&["link", "show", "mynet"])[0]["mtu"]);

    // And what the module reads back, for CHECK.
    let want = PodInterface { mac: got.mac.clone(), up: true, ipv4: vec![(addr, 16)], default_gateway: Some(GW) };
    assert_eq!(link::inspect_pod_interface(&pod.path(), "eth0").unwrap(), Some(want));
    assert_eq!(link::inspect_pod_interface(&pod.path(), "eth1").unwrap(), None);
    assert_eq!(link::inspect_pod_interface(Path::new("/var/run/netns/lk-none-0"), "eth0").unwrap(), None);

    node.run(|| {
        assert_eq!(link::bridge_ports("mynet").unwrap(), vec![host.clone()]);
        assert!(link::link_exists(&host).unwrap());
        let again = link::add_veth("mynet", &host, &pod.path(), "eth0", addr, 16, GW).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists, "{again}");
        assert!(link::delete_link(&host).unwrap());
        assert!(!link::delete_link(&host).unwrap(), "gone = success");
        assert!(!link::link_exists(&host).unwrap());
        assert!(link::bridge_ports("mynet").unwrap().is_empty());
    });
    assert_eq!(link::inspect_pod_interface(&pod.path(), "eth0").unwrap(), None, "the pair went with its host end");
}

/// TCP from `from`'s netns to a listener on `to_addr` in `to`'s (no ping on the machine).
fn tcp_reaches(from: &Netns, to: &Netns, to_addr: Ipv4Addr) -> bool {
    let listener = to.run(|| std::net::TcpListener::bind((to_addr, 0)).unwrap());
    let target = listener.local_addr().unwrap();
    let accepted = std::thread::spawn(move || listener.accept().is_ok());
    let connected = from.run(|| std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2)).is_ok());
    connected && accepted.join().unwrap()
}

#[test]
fn two_pods_on_the_bridge_reach_each_other_and_the_gateway() {
    let node = Netns::new("tcp");
    let pods = [Netns::new("tcp-a"), Netns::new("tcp-b")];
    let addrs = [Ipv4Addr::new(10, 77, 0, 10), Ipv4Addr::new(10, 77, 0, 11)];
    node.run(|| {
        link::ensure_bridge("mynet", GW, 16).unwrap();
        for (pod, addr) in pods.iter().zip(addrs) {
            link::add_veth("mynet", &link::host_veth_name(&pod.0, "eth0"), &pod.path(), "eth0", addr, 16, GW).unwrap();
        }
        assert_eq!(link::bridge_ports("mynet").unwrap().len(), 2);
    });
    assert!(tcp_reaches(&pods[0], &pods[1], addrs[1]), "a -> b");
    assert!(tcp_reaches(&pods[1], &pods[0], addrs[0]), "b -> a");
    assert!(tcp_reaches(&pods[0], &node, GW), "a -> gateway");
    assert!(tcp_reaches(&node, &pods[1], addrs[1]), "node -> b");
}

#[test]
fn failures_leave_nothing_behind() {
    let node = Netns::new("undo");
    let pod = Netns::new("undo-pod");
    let addr = Ipv4Addr::new(10, 77, 0, 7);
    node.run(|| {
        link::ensure_bridge("mynet", GW, 16).unwrap();
        let missing = Path::new("/var/run/netns/lk-missing-0");
        let e = link::add_veth("mynet", "scundo", missing, "eth0", addr, 16, GW).unwrap_err();
        assert!(e.to_string().contains("cannot open network namespace /var/run/netns/lk-missing-0"), "{e}");
        let e = link::add_veth("mynet", "scundo", Path::new("/etc/hostname"), "eth0", addr, 16, GW).unwrap_err();
        assert!(e.to_string().contains("cannot enter network namespace /etc/hostname"), "{e}");
        // Fails after the pair exists: the gateway is off the pod's subnet.
        let e = link::add_veth("mynet", "scundo", &pod.path(), "eth0", addr, 16, Ipv4Addr::new(10, 99, 0, 1)).unwrap_err();
        assert!(e.to_string().contains("cannot add the default route via 10.99.0.1 to eth0 in"), "{e}");
        assert!(!link::link_exists("scundo").unwrap());
        assert!(link::bridge_ports("mynet").unwrap().is_empty());
    });
    assert!(!ok(&["ip", "-n", &pod.0, "link", "show", "eth0"]), "no pod side left");
    // The pod's ifname is taken: a plain error, not the caller's "repeated ADD" kind.
    pod.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer"]);
    node.run(|| {
        let e = link::add_veth("mynet", "scundo", &pod.path(), "eth0", addr, 16, GW).unwrap_err();
        assert_ne!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert!(e.to_string().contains("a link of that name exists there"), "{e}");
        assert!(!link::link_exists("scundo").unwrap());
    });
}

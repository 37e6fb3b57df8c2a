//! Bridge mode as a runtime calls it: the plugin run as a real process with the env and
//! stdin containerd (go-cni) passes, on real network namespaces, a real bridge, veths and
//! nftables; and the same verbs through libcni's cnitool. No Docker anywhere.
//!
//! Each test has its own network, bridge, /24 (SMARTER_CNI_TEST_BRIDGE_BASE, default
//! 172.33) and state folders, so tests run in parallel.

mod common;

use common::{result_ip, run_plugin, Outcome};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

fn sh(args: &[&str]) -> Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn must(args: &[&str]) -> String {
    let out = sh(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace like containerd's `/var/run/netns/cni-<uuid>`, removed on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("scb-{tag}-{}", std::process::id());
        let _ = sh(&["ip", "netns", "del", &name]);
        must(&["ip", "netns", "add", &name]);
        Netns { name }
    }
    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
    fn exec(&self, cmd: &[&str]) -> Output {
        let mut args = vec!["ip", "netns", "exec", &self.name];
        args.extend_from_slice(cmd);
        sh(&args)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.name]);
    }
}

/// One test's bridge-mode network: its conflist entry, bridge, leases, records.
struct BridgeNet {
    name: String,
    bridge: String,
    subnet: String,
    gateway: String,
    dir: PathBuf,
}

impl BridgeNet {
    fn new(tag: &str) -> BridgeNet {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(n < 255, "out of test subnets");
        let base = std::env::var("SMARTER_CNI_TEST_BRIDGE_BASE").unwrap_or_else(|_| "172.33".to_string());
        let pid = std::process::id();
        let net = BridgeNet {
            name: format!("scb-{tag}-{pid}"),
            bridge: format!("scb{n}x{}", pid % 100_000),
            subnet: format!("{base}.{n}.0/24"),
            gateway: format!("{base}.{n}.1"),
            dir: PathBuf::from(format!("/run/smarter-cni-test/bridge/{tag}-{pid}")),
        };
        net.cleanup();
        net
    }

    /// The plugin entry as libcni hands it over (the list's version and name folded in).
    fn config(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": self.name,
            "type": "smarter-cni",
            "mode": "bridge",
            "bridge": self.bridge,
            "subnet": self.subnet,
            "gateway": self.gateway,
            "leasesDir": self.dir.join("leases"),
            "sandboxDir": self.dir.join("sandboxes"),
            "dns": {
                "recordsDir": self.dir.join("hosts"),
                "domainsFile": self.dir.join("domains"),
                "pidFile": self.dir.join("dnsmasq.pid"),
            },
        })
    }

    /// A conflist file for cnitool and the node commands.
    fn write_conflist(&self, conf_dir: &Path) -> PathBuf {
        self.write_conflist_version(conf_dir, "1.1.0")
    }

    fn write_conflist_version(&self, conf_dir: &Path, version: &str) -> PathBuf {
        let mut plugin = self.config(version);
        plugin.as_object_mut().unwrap().remove("cniVersion");
        plugin.as_object_mut().unwrap().remove("name");
        let list = json!({"cniVersion": version, "name": self.name, "plugins": [plugin]});
        std::fs::create_dir_all(conf_dir).unwrap();
        let path = conf_dir.join("10-smarter-cni.conflist");
        std::fs::write(&path, list.to_string()).unwrap();
        path
    }

    fn files_in(&self, sub: &str) -> Vec<String> {
        match std::fs::read_dir(self.dir.join(sub)) {
            Ok(entries) => entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.') && !n.ends_with(".lock"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn leases(&self) -> Vec<String> {
        self.files_in("leases")
    }

    fn records(&self) -> Vec<String> {
        self.files_in("hosts")
    }

    /// Host ends of pod veths still on the bridge.
    fn ports(&self) -> Vec<String> {
        let out = sh(&["ip", "-o", "link", "show", "master", &self.bridge]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| Some(l.split(": ").nth(1)?.split('@').next()?.to_string()))
            .collect()
    }

    /// The kernel tears a dead namespace's veths down in the background (as at power-off):
    /// waits, within a generous bound, until none is left on the bridge.
    fn wait_for_no_ports(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.ports().is_empty() {
            assert!(std::time::Instant::now() < deadline, "veths outlived their namespaces: {:?}", self.ports());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn bridge_exists(&self) -> bool {
        sh(&["ip", "link", "show", &self.bridge]).status.success()
    }

    /// The nftables tables that mention this network.
    fn nat_tables(&self) -> Vec<String> {
        let out = sh(&["nft", "list", "tables"]);
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(&self.name)).map(str::to_string).collect()
    }

    fn setup(&self, conf_dir: &Path) -> Output {
        let conflist = self.write_conflist(conf_dir);
        let bin = self.dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        common::plugin_command(None)
            .args(["setup", "--config"])
            .arg(&conflist)
            .arg("--bin-dir")
            .arg(&bin)
            .output()
            .unwrap()
    }

    fn cleanup(&self) {
        let _ = sh(&["ip", "link", "del", &self.bridge]);
        for flag in ["-i", "-o"] {
            let _ = sh(&["iptables", "-w", "-D", "FORWARD", flag, &self.bridge, "-j", "ACCEPT"]);
        }
        for table in self.nat_tables() {
            let words: Vec<&str> = table.split_whitespace().collect();
            if words.len() == 3 {
                let _ = sh(&["nft", "delete", "table", words[1], words[2]]);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for BridgeNet {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// A pod as containerd calls the plugin for it: its sandbox ID, netns and CNI_ARGS.
struct Pod {
    id: String,
    name: String,
    namespace: String,
    netns: Netns,
}

impl Pod {
    fn new(tag: &str, name: &str) -> Pod {
        let netns = Netns::new(tag);
        // containerd's sandbox IDs: 64 hex digits; unique per test run and tag.
        let id = format!("{:016x}{:048x}", fnv1a(tag), std::process::id());
        Pod { id, name: name.to_string(), namespace: "default".to_string(), netns }
    }

    fn env(&self, command: &str) -> Vec<(String, String)> {
        let args = format!(
            "K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID=0f1e2d3c-{};IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={}",
            self.id,
            &self.id[..8],
            self.namespace,
            self.name
        );
        [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", &self.id),
            ("CNI_NETNS", &self.netns.path()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", &args),
            ("CNI_PATH", "/opt/cni/bin"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn call(&self, command: &str, net: &BridgeNet, extra: Value) -> Outcome {
        let mut conf = net.config("1.1.0");
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            conf[k] = v;
        }
        run_plugin(&self.env(command), conf.to_string().as_bytes())
    }

    fn add(&self, net: &BridgeNet) -> Outcome {
        self.call("ADD", net, json!({}))
    }

    fn del(&self, net: &BridgeNet) -> Outcome {
        self.call("DEL", net, json!({}))
    }
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn addresses_in(netns: &Netns, ifname: &str) -> String {
    String::from_utf8_lossy(&netns.exec(&["ip", "-4", "-o", "addr", "show", "dev", ifname]).stdout).into_owned()
}

#[test]
fn add_gives_the_pod_its_interface_route_and_record_then_del_removes_all() {
    let net = BridgeNet::new("basic");
    // As a gateway boots: setup loads the NAT rules (and, on a Docker host like CI's,
    // accepts the bridge's traffic in iptables FORWARD).
    assert!(net.setup(&net.dir.join("net.d")).status.success());
    let a = Pod::new("basic-a", "web-0");
    let b = Pod::new("basic-b", "api-0");
    let ra = a.add(&net).ok().json();
    let rb = b.add(&net).ok().json();
    let (ipa, ipb) = (result_ip(&ra), result_ip(&rb));
    assert_ne!(ipa, ipb);
    assert_eq!(ra["cniVersion"], "1.1.0");
    assert_eq!(ra["interfaces"][0]["name"], "eth0");
    assert_eq!(ra["interfaces"][0]["sandbox"], a.netns.path());
    assert_eq!(ra["ips"][0]["gateway"], net.gateway);
    assert!(addresses_in(&a.netns, "eth0").contains(&format!("{ipa}/24")), "{}", addresses_in(&a.netns, "eth0"));
    let route = String::from_utf8_lossy(&a.netns.exec(&["ip", "route", "show", "default"]).stdout).into_owned();
    assert!(route.contains(&format!("via {}", net.gateway)), "{route}");
    let lo = String::from_utf8_lossy(&a.netns.exec(&["ip", "-o", "link", "show", "lo"]).stdout).into_owned();
    assert!(lo.contains("UP"), "lo must be up: {lo}");
    // Pods reach each other and the node (the gateway).
    assert!(a.netns.exec(&["ping", "-c1", "-W2", &ipb]).status.success(), "pod to pod");
    assert!(b.netns.exec(&["ping", "-c1", "-W2", &net.gateway]).status.success(), "pod to node");
    // The record: pod name and <pod>.<namespace> at once.
    let record = std::fs::read_to_string(net.dir.join("hosts").join(&a.id)).unwrap();
    assert!(record.contains(&format!("{ipa} web-0 web-0.default")), "{record}");
    assert_eq!(net.ports().len(), 2);
    assert_eq!(net.leases().len(), 2);

    // CHECK with the prevResult libcni caches.
    let check = a.call("CHECK", &net, json!({"prevResult": ra}));
    assert_eq!(check.status, 0, "{check:?}");
    // The same ADD again: the same address (a runtime retrying).
    assert_eq!(result_ip(&a.add(&net).ok().json()), ipa);

    for pod in [&a, &b] {
        pod.del(&net).ok();
    }
    assert!(net.ports().is_empty(), "{:?}", net.ports());
    assert!(net.leases().is_empty(), "{:?}", net.leases());
    assert!(net.records().is_empty(), "{:?}", net.records());
    assert!(addresses_in(&a.netns, "eth0").is_empty());
}

#[test]
fn check_catches_a_removed_address_and_a_missing_interface() {
    let net = BridgeNet::new("check");
    let pod = Pod::new("check-a", "chk-0");
    let result = pod.add(&net).ok().json();
    let ip = result_ip(&result);
    must(&["ip", "-n", &pod.netns.name, "addr", "del", &format!("{ip}/24"), "dev", "eth0"]);
    let out = pod.call("CHECK", &net, json!({"prevResult": result}));
    assert_eq!(out.error_code(), 101, "{out:?}");
    assert!(out.json()["details"].as_str().unwrap().contains(&ip), "{out:?}");
    must(&["ip", "-n", &pod.netns.name, "link", "del", "eth0"]);
    let out = pod.call("CHECK", &net, json!({"prevResult": result}));
    assert_eq!(out.error_code(), 101);
    assert!(out.json()["details"].as_str().unwrap().contains("no eth0"), "{out:?}");
    pod.del(&net).ok();
}

/// containerd sends DEL on StopPodSandbox (with the netns) and again on RemovePodSandbox
/// (CNI_NETNS="" and no prevResult); after a reboot the netns is gone as well.
#[test]
fn del_succeeds_twice_without_netns_and_when_everything_is_gone() {
    let net = BridgeNet::new("del");
    let pod = Pod::new("del-a", "del-0");
    pod.add(&net).ok();
    pod.del(&net).ok();
    let mut env = pod.env("DEL");
    env.retain(|(k, _)| k != "CNI_NETNS");
    env.push(("CNI_NETNS".into(), String::new()));
    let again = run_plugin(&env, net.config("1.1.0").to_string().as_bytes());
    assert_eq!(again.status, 0, "{again:?}");
    // A pod whose netns vanished first (the kernel took its veth with it).
    let gone = Pod::new("del-b", "del-1");
    gone.add(&net).ok();
    must(&["ip", "netns", "del", &gone.netns.name]);
    gone.del(&net).ok();
    net.wait_for_no_ports();
    assert!(net.leases().is_empty() && net.records().is_empty());
    // DEL for a pod this plugin never saw, and without CNI_IFNAME or with bad CNI_ARGS.
    let never = Pod::new("del-c", "del-2");
    never.del(&net).ok();
    let mut env = never.env("DEL");
    env.retain(|(k, _)| k != "CNI_IFNAME" && k != "CNI_ARGS");
    env.push(("CNI_ARGS".into(), "K8S_POD_NAME=../x".into()));
    let lenient = run_plugin(&env, net.config("1.1.0").to_string().as_bytes());
    assert_eq!(lenient.status, 0, "{lenient:?}");
}

#[test]
fn fifty_concurrent_adds_get_distinct_addresses_and_dels_leave_nothing() {
    let net = BridgeNet::new("many");
    let pods: Vec<Pod> = (0..50).map(|i| Pod::new(&format!("many{i}"), &format!("many-{i}"))).collect();
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = pods.iter().map(|p| s.spawn(|| p.add(&net))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ips: HashSet<String> = outcomes.iter().map(|o| result_ip(&o.ok().json())).collect();
    assert_eq!(ips.len(), 50, "addresses handed out twice");
    assert!(!ips.contains(&net.gateway));
    assert_eq!(net.leases().len(), 50);
    assert_eq!(net.ports().len(), 50);
    std::thread::scope(|s| {
        for pod in &pods {
            s.spawn(|| pod.del(&net).ok().status);
        }
    });
    assert!(net.leases().is_empty() && net.records().is_empty() && net.ports().is_empty());
}

#[test]
fn gc_frees_what_the_runtime_no_longer_lists() {
    let net = BridgeNet::new("gc");
    let keep = Pod::new("gc-keep", "keep-0");
    let stale = Pod::new("gc-stale", "stale-0");
    keep.add(&net).ok();
    stale.add(&net).ok();
    let valid = json!([{"containerID": keep.id, "ifname": "eth0"}]);
    let out = keep.call("GC", &net, json!({"cni.dev/valid-attachments": valid}));
    assert_eq!(out.status, 0, "{out:?}");
    assert_eq!(net.leases().len(), 1);
    assert_eq!(net.records(), vec![keep.id.clone()]);
    assert!(addresses_in(&stale.netns, "eth0").is_empty(), "the stale pod's veth must be gone");
    assert!(!addresses_in(&keep.netns, "eth0").is_empty());
    keep.del(&net).ok();
}

#[test]
fn bad_input_gets_the_right_code_and_changes_nothing() {
    let net = BridgeNet::new("bad");
    let pod = Pod::new("bad-a", "bad-0");
    let good = net.config("1.1.0").to_string().into_bytes();
    let with = |key: &str, value: &str| {
        let mut env = pod.env("ADD");
        env.retain(|(k, _)| k != key);
        env.push((key.to_string(), value.to_string()));
        env
    };
    let without = |key: &str| {
        let mut env = pod.env("ADD");
        env.retain(|(k, _)| k != key);
        env
    };
    let config_with = |key: &str, value: Value| {
        let mut c = net.config("1.1.0");
        c[key] = value;
        c.to_string().into_bytes()
    };
    let mut huge = net.config("1.1.0");
    huge["padding"] = json!("x".repeat(1024 * 1024));
    let cases: Vec<(&str, Vec<(String, String)>, Vec<u8>, u64)> = vec![
        ("malformed JSON", pod.env("ADD"), b"{\"cniVersion\": \"1.1.0\", ".to_vec(), 6),
        ("stdin over 1 MiB", pod.env("ADD"), huge.to_string().into_bytes(), 6),
        ("unsupported version", pod.env("ADD"), net.config("2.0.0").to_string().into_bytes(), 1),
        ("missing CNI_CONTAINERID", without("CNI_CONTAINERID"), good.clone(), 4),
        ("missing CNI_NETNS", without("CNI_NETNS"), good.clone(), 4),
        ("relative CNI_NETNS", with("CNI_NETNS", "netns/x"), good.clone(), 4),
        ("missing CNI_IFNAME", without("CNI_IFNAME"), good.clone(), 4),
        ("path as CNI_IFNAME", with("CNI_IFNAME", "../eth0"), good.clone(), 4),
        ("CNI_IFNAME over 15 bytes", with("CNI_IFNAME", "eth0123456789012"), good.clone(), 4),
        ("unknown command", with("CNI_COMMAND", "ATTACH"), good.clone(), 4),
        ("hostile container ID", with("CNI_CONTAINERID", "../../../etc/passwd"), good.clone(), 4),
        ("newline in pod name", with("CNI_ARGS", "K8S_POD_NAME=x\n1.2.3.4 evil;K8S_POD_NAMESPACE=default"), good.clone(), 4),
        ("path in pod name", with("CNI_ARGS", "K8S_POD_NAME=../../etc;K8S_POD_NAMESPACE=default"), good.clone(), 4),
        ("unknown args", with("CNI_ARGS", "EVIL=1"), good.clone(), 4),
        ("bad subnet", pod.env("ADD"), config_with("subnet", json!("172.33.0.1/33")), 7),
        ("unknown mode", pod.env("ADD"), config_with("mode", json!("macvlan")), 7),
        ("bridge name with a path", pod.env("ADD"), config_with("bridge", json!("../br0")), 7),
        ("relative leases folder", pod.env("ADD"), config_with("leasesDir", json!("leases")), 7),
        ("container DNS needs Docker", pod.env("ADD"), config_with("dns", json!({"mode": "container"})), 7),
        (
            "hostPort 0",
            pod.env("ADD"),
            config_with("runtimeConfig", json!({"portMappings": [{"hostPort": 0, "containerPort": 80, "protocol": "tcp"}]})),
            7,
        ),
        (
            "unknown protocol",
            pod.env("ADD"),
            config_with("runtimeConfig", json!({"portMappings": [{"HostPort": 8080, "ContainerPort": 80, "Protocol": "icmp"}]})),
            7,
        ),
    ];
    for (what, env, stdin, code) in cases {
        let out = run_plugin(&env, &stdin);
        assert_eq!(out.error_code(), code, "{what}: {out:?}");
        assert!(!out.json()["msg"].as_str().unwrap().is_empty(), "{what}");
    }
    assert!(!net.bridge_exists(), "no bridge may have been created");
    assert!(net.leases().is_empty() && net.records().is_empty());
    assert!(addresses_in(&pod.netns, "eth0").is_empty());
}

#[test]
fn status_is_ready_after_setup_and_code_50_when_something_is_in_the_way() {
    let net = BridgeNet::new("status");
    let pod = Pod::new("status-a", "st-0");
    let conf_dir = net.dir.join("net.d");
    let before = pod.call("STATUS", &net, json!({}));
    assert_eq!(before.error_code(), 50, "no NAT rules before setup: {before:?}");
    let out = net.setup(&conf_dir);
    assert!(out.status.success(), "setup: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let ready = pod.call("STATUS", &net, json!({}));
    assert_eq!(ready.status, 0, "{ready:?}");
    // setup again changes nothing.
    let again = net.setup(&conf_dir);
    let text = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(text.contains("0 changed") && text.contains("0 errors"), "{text}");
    // Something that is not a bridge under the bridge's name.
    must(&["ip", "link", "del", &net.bridge]);
    let peer = format!("{}p", net.bridge);
    must(&["ip", "link", "add", &net.bridge, "type", "veth", "peer", "name", &peer]);
    let blocked = pod.call("STATUS", &net, json!({}));
    assert_eq!(blocked.error_code(), 50, "{blocked:?}");
    let add = pod.add(&net);
    assert_eq!(add.error_code(), 100, "{add:?}");
    assert!(net.leases().is_empty(), "a failed ADD keeps no lease");
}

/// A reboot: the pods' namespaces are gone (their veths with them) and /run is empty, but
/// the leases on disk remain; `setup` at boot reclaims every one.
#[test]
fn setup_after_a_reboot_reclaims_every_lease() {
    let net = BridgeNet::new("reboot");
    let conf_dir = net.dir.join("net.d");
    assert!(net.setup(&conf_dir).status.success());
    let pods: Vec<Pod> = (0..3).map(|i| Pod::new(&format!("reboot{i}"), &format!("rb-{i}"))).collect();
    for pod in &pods {
        pod.add(&net).ok();
    }
    assert_eq!(net.leases().len(), 3);
    for pod in &pods {
        must(&["ip", "netns", "del", &pod.netns.name]);
    }
    net.wait_for_no_ports();
    let _ = std::fs::remove_dir_all(net.dir.join("hosts"));
    let _ = std::fs::remove_file(net.dir.join("domains"));
    must(&["ip", "link", "del", &net.bridge]);
    let out = net.setup(&conf_dir);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("reclaimed 3 address lease(s)"), "{text}");
    assert!(net.leases().is_empty());
    // The next pod starts cleanly.
    let next = Pod::new("reboot-next", "rb-next");
    next.add(&net).ok();
    next.del(&net).ok();
}

#[test]
fn add_check_del_through_cnitool() {
    let Ok(cnitool) = std::env::var("SMARTER_CNI_TEST_CNITOOL") else {
        panic!("SMARTER_CNI_TEST_CNITOOL is not set: run scripts/test.sh (scripts/cnitool.sh builds it)");
    };
    let net = BridgeNet::new("cnitool");
    let conf_dir = net.dir.join("net.d");
    assert!(net.setup(&conf_dir).status.success());
    // This cnitool is libcni 1.1.2's (as cri-dockerd vendors it): results up to 1.0.0.
    net.write_conflist_version(&conf_dir, "1.0.0");
    let bin = net.dir.join("cnitool-bin");
    std::fs::create_dir_all(&bin).unwrap();
    // The binary under test; under an emulator (scripts/test-cross.sh) a wrapper script.
    let binary = std::env::var("SMARTER_CNI_PLUGIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_smarter-cni").to_string());
    match std::env::var("SMARTER_CNI_PLUGIN_WRAPPER").ok().filter(|w| !w.is_empty()) {
        None => std::os::unix::fs::symlink(&binary, bin.join("smarter-cni")).unwrap(),
        Some(wrapper) => {
            std::fs::write(bin.join("smarter-cni"), format!("#!/bin/sh\nexec {wrapper} {binary} \"$@\"\n")).unwrap();
            std::fs::set_permissions(bin.join("smarter-cni"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
    }
    let pods = [Netns::new("tool-a"), Netns::new("tool-b")];
    let run = |verb: &str, netns: &Netns| {
        let out = Command::new(&cnitool)
            .args([verb, &net.name, &netns.path()])
            .env("CNI_PATH", &bin)
            .env("NETCONFPATH", &conf_dir)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_ARGS", format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={}", netns.name))
            .output()
            .unwrap();
        assert!(out.status.success(), "cnitool {verb}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ips: Vec<String> = pods.iter().map(|p| result_ip(&serde_json::from_str(&run("add", p)).unwrap())).collect();
    assert_ne!(ips[0], ips[1]);
    assert!(pods[0].exec(&["ping", "-c1", "-W2", &ips[1]]).status.success());
    run("check", &pods[0]);
    for pod in &pods {
        run("del", pod);
    }
    assert!(net.leases().is_empty() && net.records().is_empty() && net.ports().is_empty());
}

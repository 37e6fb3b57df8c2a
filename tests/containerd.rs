//! Pods on a real containerd (scripts/containerd.sh), driven through its CRI socket as the
//! kubelet drives it. One run covers one daemon, chosen by the environment:
//! `set -a; eval "$(scripts/containerd.sh env 2.1)"; set +a; cargo test --test containerd`.
//! The pod network is smarter-cni's bridge mode as tests/cri/pod_network.rs installs it (setup,
//! node DNS, the hostnames service, the shipped containerd conflist).

mod cri;
mod traffic;

use cri::*;
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

fn in_subnet(ctx: &TestCtx, ip: &str) -> bool {
    let prefix = ctx.subnet.trim_end_matches("0/24");
    ip.parse::<Ipv4Addr>().is_ok() && ip.starts_with(prefix) && ip != ctx.gateway
}

async fn start(ctx: &TestCtx, cri: &CriClient, spec: PodSpec) -> Pod {
    let name = spec.name.clone();
    let t = Instant::now();
    let pod = Pod::start(ctx, cri, spec).await.unwrap_or_else(|e| panic!("starting pod {name}: {e}"));
    eprintln!("pod {name}: {} ip {} in {:?}", &pod.id[..12], pod.ip, t.elapsed());
    assert!(in_subnet(ctx, &pod.ip), "pod {name} got {:?}, not an address of {}", pod.ip, ctx.subnet);
    pod
}

async fn stop_remove_clean(ctx: &TestCtx, cri: &CriClient, pod: &mut Pod) {
    pod.stop_remove(cri).await.unwrap_or_else(|e| panic!("removing pod {}: {e}", pod.spec.name));
    let left = pod.leftovers(ctx, cri).await;
    assert!(left.is_empty(), "pod {} left: {left:?}", pod.spec.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_reports_network_ready() {
    let ctx = TestCtx::get().await;
    let cri = ctx.client().await;
    let v = cri.version().await.unwrap();
    eprintln!("{} {} (CRI {}), network {} on {}", v.runtime_name, v.runtime_version, v.runtime_api_version, ctx.network, ctx.socket);
    assert_eq!(v.runtime_api_version, "v1");
    let (ready, why) = cri.network_ready().await.unwrap();
    assert!(ready, "NetworkReady false: {why}");
    // The shipped conflist says `"cniVersion": "1.0.0", "cniVersions": ["1.0.0", "1.1.0"]`:
    // containerd 2.x (libcni >= 1.2) picks 1.1.0 and asks STATUS, which NetworkReady then
    // follows; 1.7 (libcni 1.1) speaks 1.0.0 and never asks.
    let status: Vec<CniCall> = ctx.all_cni_calls().into_iter().filter(|c| c.command() == "STATUS").collect();
    if ctx.tag.starts_with('1') {
        assert!(status.is_empty(), "containerd 1.x sent STATUS: {status:?}");
    } else {
        let call = status.first().expect("containerd 2.x asks the plugin's STATUS");
        assert!(call.stdin.contains(r#""cniVersion":"1.1.0""#), "{}", call.stdin);
        assert_eq!(call.rc, Some(0), "{call:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_reach_each_other() {
    let ctx = TestCtx::get().await;
    let cri = ctx.client().await;
    let mut a = start(ctx, &cri, PodSpec::new("reach-a")).await;
    let mut server = PodSpec::new("reach-b");
    // Answers every TCP connection on 7777 with its hostname.
    server.command = Some(["nc", "-ll", "-p", "7777", "-e", "hostname"].map(String::from).to_vec());
    let mut b = start(ctx, &cri, server).await;
    assert_ne!(a.ip, b.ip);

    a.exec_ok(&cri, &["ping", "-c", "1", "-W", "5", &b.ip]).await;
    b.exec_ok(&cri, &["ping", "-c", "1", "-W", "5", &a.ip]).await;
    // The listener may need a moment after StartContainer.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (reached, answer) = loop {
        let r = a.exec(&cri, &["nc", "-w", "2", &b.ip, "7777"]).await;
        let answer = String::from_utf8_lossy(&r.stdout).trim().to_string();
        if (r.exit_code == 0 && !answer.is_empty()) || Instant::now() > deadline {
            break (r.exit_code == 0 && !answer.is_empty(), answer);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(reached, "pod a got no answer from {}:7777 (last: {answer:?})", b.ip);
    assert_eq!(answer, b.spec.hostname);

    stop_remove_clean(ctx, &cri, &mut a).await;
    stop_remove_clean(ctx, &cri, &mut b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostname_inside_is_the_sandbox_hostname() {
    let ctx = TestCtx::get().await;
    let cri = ctx.client().await;
    let mut spec = PodSpec::new("hostname");
    // spec.hostname set, as the 2019 article's DaemonSet does (`hostname: example`).
    spec.hostname = format!("example-{}", std::process::id());
    let mut pod = start(ctx, &cri, spec).await;
    assert_eq!(pod.exec_ok(&cri, &["hostname"]).await.trim(), pod.spec.hostname);
    assert_eq!(pod.exec_ok(&cri, &["cat", "/etc/hostname"]).await.trim(), pod.spec.hostname);
    stop_remove_clean(ctx, &cri, &mut pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolv_conf_inside_is_the_dns_config() {
    let ctx = TestCtx::get().await;
    let cri = ctx.client().await;
    let mut spec = PodSpec::new("resolv");
    spec.dns = DnsConfig {
        servers: vec![CLUSTER_DNS.into(), "192.0.2.53".into()],
        searches: vec!["cri-test.svc.cluster.local".into(), "svc.cluster.local".into(), "cluster.local".into(), "lan".into()],
        options: vec!["ndots:5".into(), "timeout:2".into()],
    };
    let mut pod = start(ctx, &cri, spec).await;
    let text = pod.exec_ok(&cri, &["cat", "/etc/resolv.conf"]).await;
    let (mut servers, mut searches, mut options) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => servers.extend(words.map(String::from)),
            Some("search") => searches.extend(words.map(String::from)),
            Some("options") => options.extend(words.map(String::from)),
            _ => {}
        }
    }
    assert_eq!((servers, searches, options), (pod.spec.dns.servers.clone(), pod.spec.dns.searches.clone(), pod.spec.dns.options.clone()), "resolv.conf:\n{text}");
    stop_remove_clean(ctx, &cri, &mut pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_remove_leave_nothing() {
    let ctx = TestCtx::get().await;
    let cri = ctx.client().await;
    let mut pod = start(ctx, &cri, PodSpec::new("leave-nothing")).await;
    // The checks must see the pod while it lives, or an empty list would prove nothing.
    assert!(std::path::Path::new(&pod.netns).exists(), "netns {} missing while the pod runs", pod.netns);
    let veth = pod.host_veth.clone().expect("no host veth found for the pod's eth0");
    assert!(std::path::Path::new("/sys/class/net").join(&veth).exists());
    assert!(!pod.leftovers(ctx, &cri).await.is_empty());
    pod.exec_ok(&cri, &["ping", "-c", "1", "-W", "5", &ctx.gateway]).await;

    let adds = ctx.cni_calls(&pod.id);
    let add = adds.iter().find(|c| c.command() == "ADD" && c.env.get("CNI_IFNAME").map(String::as_str) == Some(POD_IFNAME) && c.plugin != "loopback");
    let add = add.unwrap_or_else(|| panic!("no pod network ADD recorded for {}: {adds:?}", pod.id));
    assert_eq!(add.env.get("CNI_NETNS"), Some(&pod.netns));
    assert_eq!(add.rc, Some(0), "ADD failed: {}", add.stdout);
    let args = add.env.get("CNI_ARGS").cloned().unwrap_or_default();
    for want in [format!("K8S_POD_NAME={}", pod.spec.name), format!("K8S_POD_NAMESPACE={}", pod.spec.namespace), format!("K8S_POD_UID={}", pod.uid)] {
        assert!(args.split(';').any(|a| a == want), "CNI_ARGS {args:?} lacks {want}");
    }

    stop_remove_clean(ctx, &cri, &mut pod).await;
    let calls = ctx.cni_calls(&pod.id);
    let dels: Vec<_> = calls.iter().filter(|c| c.command() == "DEL" && c.plugin == add.plugin).collect();
    assert!(!dels.is_empty(), "no DEL recorded for {}", pod.id);
    assert!(dels.iter().all(|c| c.rc == Some(0)), "a DEL failed: {dels:?}");
    eprintln!(
        "CNI calls for {}: {:?}",
        &pod.id[..12],
        calls.iter().map(|c| format!("{} {} netns={:?}", c.plugin, c.command(), c.env.get("CNI_NETNS").map(String::as_str).unwrap_or(""))).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_sandboxes_at_once_get_distinct_addresses_and_clean_up() {
    const N: usize = 30;
    let ctx = TestCtx::get().await;
    let cri = ctx.client().await;
    let t = Instant::now();
    let starts: Vec<_> = (0..N)
        .map(|_| {
            let cri = cri.clone();
            let mut spec = PodSpec::new("thirty");
            spec.command = None; // sandboxes only: the network is the sandbox's
            tokio::spawn(async move { Pod::start(ctx, &cri, spec).await })
        })
        .collect();
    let mut pods = Vec::new();
    let mut failures = Vec::new();
    for s in starts {
        match s.await.expect("start task") {
            Ok(pod) => pods.push(pod),
            Err(e) => failures.push(e.to_string()),
        }
    }
    let started = t.elapsed();
    assert!(failures.is_empty(), "{} of {N} sandboxes failed: {failures:?}", failures.len());
    let ips: HashSet<&str> = pods.iter().map(|p| p.ip.as_str()).collect();
    assert_eq!(ips.len(), N, "addresses not distinct: {:?}", pods.iter().map(|p| &p.ip).collect::<Vec<_>>());
    for p in &pods {
        assert!(in_subnet(ctx, &p.ip), "{} got {:?}", p.spec.name, p.ip);
    }

    let t = Instant::now();
    let stops: Vec<_> = pods
        .into_iter()
        .map(|mut pod| {
            let cri = cri.clone();
            tokio::spawn(async move {
                let r = pod.stop_remove(&cri).await;
                (pod, r)
            })
        })
        .collect();
    let mut pods = Vec::new();
    for s in stops {
        let (pod, r) = s.await.expect("stop task");
        r.unwrap_or_else(|e| panic!("removing {}: {e}", pod.spec.name));
        pods.push(pod);
    }
    let removed = t.elapsed();
    for pod in &pods {
        let left = pod.leftovers(ctx, &cri).await;
        assert!(left.is_empty(), "pod {} left: {left:?}", pod.spec.name);
    }
    eprintln!("{N} sandboxes: started in {started:?}, stopped+removed in {removed:?}");
}


// --- smarter-cni's bridge mode: names, egress, hostPorts ---------------------------------

/// What node DNS (dnsmasq on the gateway) answers for `name`, asked from inside a pod
/// (busybox nslookup, against the pod's resolv.conf from the CRI DNS config). The name is
/// made absolute: busybox's nslookup tries only the search list for a name with fewer dots
/// than `ndots:5`, where glibc would try the name itself last.
async fn resolve_in(pod: &Pod, cri: &CriClient, name: &str) -> Option<String> {
    let r = pod.exec(cri, &["nslookup", &format!("{name}.")]).await;
    let out = String::from_utf8_lossy(&r.stdout).into_owned();
    // busybox: "Name:\t<name>\nAddress: <ip>" after the server's own lines.
    let answer = out.split("Name:").nth(1)?;
    answer.lines().find_map(|l| l.trim().strip_prefix("Address:").map(|a| a.trim().to_string()))
}

fn node_dns_spec(ctx: &TestCtx, test: &str) -> PodSpec {
    let mut spec = PodSpec::new(test);
    // The kubelet's cluster DNS on a gateway is node DNS, the bridge's gateway address.
    spec.dns.servers = vec![ctx.gateway.clone()];
    spec
}

fn record_of(ctx: &TestCtx, sandbox: &str) -> String {
    std::fs::read_to_string(records_dir(ctx).join(sandbox)).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_resolve_each_other_by_hostname_pod_name_and_namespace() {
    let ctx = TestCtx::get().await;
    let cri = ctx.client().await;
    // spec.hostname, as the 2019 article's DaemonSet sets it (`hostname: example`).
    let mut named = node_dns_spec(ctx, "names-a");
    named.hostname = format!("example{}", ctx.tag);
    let started = Instant::now();
    let mut a = start(ctx, &cri, named).await;
    // containerd 1.7 wrote the hostname before ADD, so the record has it at once; 2.x
    // writes it after ADD, and the hostnames service adds it (inotify).
    let mut learned = None;
    while started.elapsed() < Duration::from_secs(10) {
        if record_of(ctx, &a.id).contains(&format!(" {}", a.spec.hostname)) {
            learned = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let learned = learned.unwrap_or_else(|| panic!("hostname never reached the record: {:?}", record_of(ctx, &a.id)));
    eprintln!("containerd {}: hostname in the record {learned:?} after RunPodSandbox was called", ctx.runtime_version);
    let mut b = start(ctx, &cri, node_dns_spec(ctx, "names-b")).await;
    for name in [a.spec.hostname.clone(), a.spec.name.clone(), format!("{}.{}", a.spec.name, a.spec.namespace)] {
        assert_eq!(resolve_in(&b, &cri, &name).await.as_deref(), Some(a.ip.as_str()), "{name} from {}", b.spec.name);
    }
    for name in [b.spec.hostname.clone(), format!("{}.{}", b.spec.name, b.spec.namespace)] {
        assert_eq!(resolve_in(&a, &cri, &name).await.as_deref(), Some(b.ip.as_str()), "{name} from {}", a.spec.name);
    }
    assert_eq!(resolve_in(&a, &cri, "nosuch-pod").await, None);
    stop_remove_clean(ctx, &cri, &mut a).await;
    assert_eq!(resolve_in(&b, &cri, &format!("{}.{}", a.spec.name, a.spec.namespace)).await, None, "a removed pod's name is gone");
    stop_remove_clean(ctx, &cri, &mut b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_networked_process_resolves_pod_names() {
    let ctx = TestCtx::get().await;
    let cri = ctx.client().await;
    let mut pod = start(ctx, &cri, node_dns_spec(ctx, "hostnet")).await;
    // A node process (or a hostNetwork pod) whose resolv.conf names node DNS: a private
    // mount namespace with that file bound over /etc/resolv.conf.
    let resolv = ctx.work_dir.join("node-resolv.conf");
    std::fs::write(&resolv, format!("nameserver {}\n", ctx.gateway)).unwrap();
    for name in [pod.spec.name.clone(), format!("{}.{}", pod.spec.name, pod.spec.namespace)] {
        let script = format!("mount --bind {} /etc/resolv.conf && exec getent hosts {name}", resolv.display());
        let out = std::process::Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &script]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(text.split_whitespace().next(), Some(pod.ip.as_str()), "getent hosts {name}: {text}");
    }
    stop_remove_clean(ctx, &cri, &mut pod).await;
}

/// A host in a network namespace of its own, joined to the node by a veth pair: the
/// gateway's LAN or uplink. Removed on drop.
struct OutsideHost {
    ns: String,
    node_end: String,
    node_address: Ipv4Addr,
    address: Ipv4Addr,
}

impl OutsideHost {
    fn new(ctx: &TestCtx, role: &str, net: u8) -> OutsideHost {
        let tag: u8 = ctx.tag.parse().unwrap();
        let ns = format!("sct-cri{tag}-{role}");
        let node_end = format!("sc{role}{tag}");
        let (node_address, address) = (Ipv4Addr::new(198, net, tag, 1), Ipv4Addr::new(198, net, tag, 2));
        let ip = |args: String| {
            let out = std::process::Command::new("ip").args(args.split_whitespace()).output().unwrap();
            assert!(out.status.success(), "ip {args}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let _ = std::process::Command::new("ip").args(["netns", "del", &ns]).status();
        let _ = std::process::Command::new("ip").args(["link", "del", &node_end]).status();
        ip(format!("netns add {ns}"));
        ip(format!("link add {node_end} type veth peer name eth0 netns {ns}"));
        ip(format!("addr add {node_address}/24 dev {node_end}"));
        ip(format!("link set {node_end} up"));
        ip(format!("-n {ns} addr add {address}/24 dev eth0"));
        ip(format!("-n {ns} link set eth0 up"));
        ip(format!("-n {ns} link set lo up"));
        OutsideHost { ns, node_end, node_address, address }
    }
}

impl Drop for OutsideHost {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["link", "del", &self.node_end]).status();
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_reaches_an_internet_host_through_masquerade() {
    let ctx = TestCtx::get().await;
    let cri = ctx.client().await;
    // No route back to the pods: only the node's address works as a source.
    let internet = OutsideHost::new(ctx, "inet", 18);
    let _server = traffic::Echo::start(&internet.ns, "inet", 7001, 7001);
    let pod = start(ctx, &cri, PodSpec::new("egress")).await;
    let mut pod = pod;
    let (tcp, udp) = (traffic::tcp_from(&pod.netns, (internet.address, 7001)), traffic::udp_from(&pod.netns, (internet.address, 7001)));
    assert_eq!(traffic::seen(tcp), ("inet".to_string(), internet.node_address), "TCP is masqueraded to the node's address");
    assert_eq!(traffic::seen(udp), ("inet".to_string(), internet.node_address), "UDP too");
    // From the app container too (its own process, the pod's resolv.conf and routes).
    let r = pod.exec(&cri, &["nc", "-w", "3", &internet.address.to_string(), "7001"]).await;
    let answer = String::from_utf8_lossy(&r.stdout).into_owned();
    assert!(answer.starts_with(&format!("inet {}:", internet.node_address)), "{answer:?}");
    stop_remove_clean(ctx, &cri, &mut pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lan_host_reaches_a_pods_host_port_tcp_and_udp() {
    let ctx = TestCtx::get().await;
    let cri = ctx.client().await;
    let lan = OutsideHost::new(ctx, "lan", 19);
    let host_port = 18000 + ctx.tag.parse::<i32>().unwrap();
    let mut spec = PodSpec::new("hostport");
    spec.port_mappings = [PROTOCOL_TCP, PROTOCOL_UDP]
        .iter()
        .map(|&protocol| PortMapping { protocol, container_port: 7002, host_port, host_ip: String::new() })
        .collect();
    let mut pod = start(ctx, &cri, spec).await;
    let _server = traffic::Echo::start(&pod.netns, "pod", 7002, 7002);
    let node = (lan.node_address, host_port as u16);
    let (tag, from) = traffic::seen(traffic::tcp_from(&lan.ns, node));
    assert_eq!((tag.as_str(), from), ("pod", lan.address), "TCP from the LAN keeps its source");
    let (tag, from) = traffic::seen(traffic::udp_from(&lan.ns, node));
    assert_eq!((tag.as_str(), from), ("pod", lan.address), "UDP from the LAN");
    // From the node itself, to its own address.
    let (tag, _) = traffic::seen(traffic::tcp_from("/proc/self/ns/net", node));
    assert_eq!(tag, "pod");
    // A second pod asking for the same host port is refused, naming the holder.
    let mut rival = PodSpec::new("hostport-rival");
    rival.port_mappings = vec![PortMapping { protocol: PROTOCOL_TCP, container_port: 80, host_port, host_ip: String::new() }];
    let err = match Pod::start(ctx, &cri, rival).await {
        Ok(_) => panic!("a second pod got hostPort {host_port}"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&format!("is already held by pod {}/{}", pod.spec.namespace, pod.spec.name)), "{err}");
    stop_remove_clean(ctx, &cri, &mut pod).await;
    assert!(traffic::tcp_from(&lan.ns, node).is_err(), "nothing answers once the pod is gone");
}

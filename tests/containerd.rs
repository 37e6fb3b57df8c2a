//! Pods on a real containerd (scripts/containerd.sh), driven through its CRI socket as the
//! kubelet drives it. One run covers one daemon, chosen by the environment:
//! `set -a; eval "$(scripts/containerd.sh env 2.1)"; set +a; cargo test --test containerd`.
//! The pod network is whatever tests/cri/pod_network.rs installs.

mod cri;

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

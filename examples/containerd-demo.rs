//! The bridge-mode half of `scripts/demo.sh bridge`: a containerd 2.1 node (from
//! scripts/containerd.sh) prepared as a gateway boots (smarter-cni setup, node DNS, the
//! hostnames service, the shipped containerd conflist), then two pods started through the CRI
//! as the kubelet starts them, resolving each other by name. Everything is removed at the end.
//! Needs the environment of `scripts/containerd.sh env 2.1` and SMARTER_CNI_PLUGIN.

#[path = "../tests/cri/mod.rs"]
mod cri;

use cri::*;
use std::time::Duration;

fn say(text: &str) {
    println!("\n\x1b[1m== {text}\x1b[0m");
}

/// busybox's nslookup tries only the search list for a short name (`ndots:5`), where glibc
/// tries the name itself last: ask for the absolute name.
async fn nslookup(pod: &Pod, cri: &CriClient, name: &str) -> String {
    let r = pod.exec(cri, &["nslookup", &format!("{name}.")]).await;
    let out = String::from_utf8_lossy(&r.stdout).into_owned();
    out.split("Name:")
        .nth(1)
        .and_then(|a| a.lines().find_map(|l| l.trim().strip_prefix("Address:").map(|ip| ip.trim().to_string())))
        .unwrap_or_else(|| "NOT FOUND".to_string())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    say("Node: containerd's CRI, smarter-cni setup, node DNS and the hostnames service");
    let ctx = TestCtx::get().await;
    let cri = ctx.client().await;
    let v = cri.version().await.unwrap();
    println!("{} {} at {}; bridge {} {} (gateway and node DNS {})", v.runtime_name, v.runtime_version, ctx.socket, ctx.bridge, ctx.subnet, ctx.gateway);

    say("Two pods, started the way the kubelet starts them (RunPodSandbox, CreateContainer, StartContainer)");
    let mut alpha = PodSpec::new("alpha");
    alpha.hostname = "example".to_string(); // spec.hostname, as the 2019 article's DaemonSet
    let mut beta = PodSpec::new("beta");
    for spec in [&mut alpha, &mut beta] {
        spec.namespace = "default".to_string();
        spec.dns.servers = vec![ctx.gateway.clone()];
        spec.dns.searches = vec!["default.svc.cluster.local".into(), "svc.cluster.local".into(), "cluster.local".into()];
    }
    let mut a = Pod::start(ctx, &cri, alpha).await.expect("pod alpha");
    let mut b = Pod::start(ctx, &cri, beta).await.expect("pod beta");
    for pod in [&a, &b] {
        println!("{:<22} hostname {:<14} IP {}", pod.spec.name, pod.spec.hostname, pod.ip);
    }
    // containerd 2.x writes the hostname after ADD; the hostnames service adds it at once.
    tokio::time::sleep(Duration::from_millis(100)).await;

    say("Pods resolve each other by hostname, pod name and pod.namespace (node DNS)");
    let a_full = format!("{}.{}", a.spec.name, a.spec.namespace);
    let b_full = format!("{}.{}", b.spec.name, b.spec.namespace);
    for (from, name) in [(&b, a.spec.hostname.clone()), (&b, a.spec.name.clone()), (&b, a_full), (&a, b.spec.hostname.clone()), (&a, b_full)] {
        println!("{:<22} nslookup {:<28} -> {}", from.spec.name, name, nslookup(from, &cri, &name).await);
    }

    say("smarter-cni status");
    let status = std::process::Command::new(plugin_binary())
        .args(["status", "--config"])
        .arg(ctx.work_dir.join("node/net.d/10-smarter-cni.conflist"))
        .arg("--bin-dir")
        .arg(ctx.work_dir.join("node/bin"))
        .arg("--dnsmasq-config")
        .arg(ctx.work_dir.join("node/dnsmasq.conf"))
        .output()
        .unwrap();
    print!("{}", String::from_utf8_lossy(&status.stdout));

    say("Removing the pods (StopPodSandbox, RemovePodSandbox)");
    a.stop_remove(&cri).await.unwrap();
    b.stop_remove(&cri).await.unwrap();
    let left: Vec<String> = [a.leftovers(ctx, &cri).await, b.leftovers(ctx, &cri).await].concat();
    println!("left behind: {}", if left.is_empty() { "nothing".to_string() } else { format!("{left:?}") });
}

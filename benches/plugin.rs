//! Benchmark (prints numbers; asserts nothing): ADD/DEL of the plugin process against the
//! same engine work done from one warm process, VERSION latency and peak RSS, node DNS
//! record latency, pod-name lookups with the uplink down, binary size. Run with
//! scripts/bench.sh.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use smarter_cni::dns::query::{query_a, Answer};
use smarter_cni::mode::docker::engine::Engine;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PODS: usize = 40;
const VERSION_RUNS: usize = 300;
const OFFLINE_LOOKUPS: usize = 60;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn summary(name: &str, samples: &mut [Duration]) -> (Duration, Duration) {
    let median = percentile(samples, 0.5);
    let p95 = percentile(samples, 0.95);
    println!("{name:<34} median {:>10}  p95 {:>10}  (n={})", ms(median), ms(p95), samples.len());
    (median, p95)
}

/// VERSION as cri-dockerd runs it every 5 s; peak RSS from the kernel's rusage of children.
fn bench_version() {
    let mut samples = Vec::new();
    for _ in 0..VERSION_RUNS {
        let mut cmd = plugin_command(None);
        cmd.env_clear().env("CNI_COMMAND", "VERSION").stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
        let started = Instant::now();
        let mut child = cmd.spawn().unwrap();
        {
            use std::io::Write;
            let _ = child.stdin.take().unwrap().write_all(br#"{"cniVersion":"1.0.0"}"#);
        }
        assert!(child.wait().unwrap().success());
        samples.push(started.elapsed());
    }
    summary("VERSION (process, wall)", &mut samples);
    // Peak RSS through GNU time: rusage of our own children would count this (much larger)
    // process, whose memory a spawned child shares until it execs the plugin.
    let mut peak_kb = 0u64;
    for _ in 0..20 {
        let mut cmd = Command::new("/usr/bin/time");
        cmd.arg("-f").arg("%M");
        if let Ok(wrapper) = std::env::var("SMARTER_CNI_PLUGIN_WRAPPER") {
            if !wrapper.is_empty() {
                cmd.arg(wrapper);
            }
        }
        let out = cmd
            .arg(std::env::var("SMARTER_CNI_PLUGIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_smarter-cni").to_string()))
            .env_clear()
            .env("CNI_COMMAND", "VERSION")
            .stdin(Stdio::null())
            .output()
            .expect("GNU time (Debian package `time`)");
        let kb: u64 = String::from_utf8_lossy(&out.stderr).trim().lines().last().unwrap_or("0").parse().unwrap_or(0);
        peak_kb = peak_kb.max(kb);
    }
    println!("{:<34} {:.2} MB (GNU time %M, max of 20; includes time's own pre-exec pages)", "VERSION peak RSS", peak_kb as f64 / 1024.0);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // Only `cargo bench` runs this: `cargo test --benches` passes --test-ish flags; skip then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let binary = std::env::var("SMARTER_CNI_PLUGIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_smarter-cni").to_string());
    println!("plugin binary: {binary} ({} bytes)", std::fs::metadata(&binary).unwrap().len());
    println!("engine: {}", docker_host());
    bench_version();

    let mut net = TestNet::new("bench");
    net.extra = serde_json::json!({});
    let dir = std::path::PathBuf::from(format!("/run/smarter-cni-test/bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hole = BlackHole::start();
    let dnsmasq = start_node_dns(&net, &dir, Some(hole.port));

    // Warm-up: creates the network, so every measured ADD does the same work.
    let warm = Sandbox::start("bench-warm", "default", "benchwarm", &net.gateway).await;
    add(&net, &warm, "1.0.0").await.ok();

    // Two sets of fresh sandboxes, handled alternately so that both see the same engine
    // state: one through the plugin process, one through the floor.
    let mut pods = Vec::new();
    let mut floor_pods = Vec::new();
    for i in 0..PODS {
        pods.push(Sandbox::start(&format!("bench-{i}"), "default", &format!("bench{i}"), &net.gateway).await);
        floor_pods.push(Sandbox::start(&format!("floor-{i}"), "default", &format!("floor{i}"), &net.gateway).await);
    }
    // The floor: the same engine calls from one warm process (connection, version
    // negotiation and runtime already paid).
    let engine = Engine::connect(Path::new(&docker_socket()), Duration::from_secs(30)).await.unwrap();
    let mut add_samples = Vec::new();
    let mut dns_samples = Vec::new();
    let mut floor_add = Vec::new();
    let gateway: Ipv4Addr = net.gateway.parse().unwrap();
    for (pod, floor_pod) in pods.iter().zip(&floor_pods) {
        let out = add(&net, pod, "1.0.0").await;
        out.ok();
        add_samples.push(out.elapsed);
        let answered = Instant::now();
        let ip: Ipv4Addr = result_ip(&out.json()).parse().unwrap();
        loop {
            if let Ok(Answer::Addresses(found)) = query_a(SocketAddr::from((gateway, 53)), &pod.pod, Duration::from_millis(200)) {
                if found.contains(&ip) {
                    break;
                }
            }
            assert!(answered.elapsed() < Duration::from_secs(5), "record for {} never answered", pod.pod);
            std::thread::sleep(Duration::from_millis(2));
        }
        dns_samples.push(answered.elapsed());

        let aliases = vec![floor_pod.hostname.clone(), floor_pod.pod.clone(), format!("{}.{}", floor_pod.pod, floor_pod.namespace)];
        let started = Instant::now();
        let sandbox = engine.container(&floor_pod.id).await.unwrap().unwrap();
        engine.network(&net.name).await.unwrap().unwrap();
        if sandbox.endpoints.contains_key("none") {
            engine.detach("none", &floor_pod.id).await.unwrap();
        }
        engine.attach(&net.name, &floor_pod.id, &aliases, None).await.unwrap();
        engine.container(&floor_pod.id).await.unwrap().unwrap();
        floor_add.push(started.elapsed());
    }
    let mut del_samples = Vec::new();
    let mut floor_del = Vec::new();
    for (pod, floor_pod) in pods.iter().zip(&floor_pods) {
        let out = del(&net, pod, "1.0.0").await;
        out.ok();
        del_samples.push(out.elapsed);
        let started = Instant::now();
        engine.container(&floor_pod.id).await.unwrap().unwrap();
        engine.detach(&net.name, &floor_pod.id).await.unwrap();
        floor_del.push(started.elapsed());
    }

    println!();
    let (add_median, add_p95) = summary("ADD  plugin process", &mut add_samples);
    let (floor_add_median, floor_add_p95) = summary("ADD  floor (warm process, API only)", &mut floor_add);
    let (del_median, del_p95) = summary("DEL  plugin process", &mut del_samples);
    let (floor_del_median, floor_del_p95) = summary("DEL  floor (warm process, API only)", &mut floor_del);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "ratio ADD median {:.3}x p95 {:.3}x | DEL median {:.3}x p95 {:.3}x   (target <= 1.15x)",
        ratio(add_median, floor_add_median),
        ratio(add_p95, floor_add_p95),
        ratio(del_median, floor_del_median),
        ratio(del_p95, floor_del_p95)
    );
    summary("node DNS answers after ADD returns", &mut dns_samples);

    bench_offline_lookups(&net, &dir, &warm).await;
    drop(dnsmasq);
    bench_offline_lookup_before(&net, &dir, &warm, hole.port);
    for pod in pods.iter().chain(&floor_pods).chain([&warm]) {
        pod.remove().await;
    }
    net.cleanup().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Node DNS as shipped, pointed at this run's network and at `upstream` on loopback (or
/// none): nothing leaves the host.
fn start_node_dns(net: &TestNet, dir: &Path, upstream: Option<u16>) -> ChildGuard {
    std::fs::create_dir_all(&net.records_dir).unwrap();
    let path = dir.join("dnsmasq.conf");
    std::fs::write(&path, shipped_node_dns_config(net, upstream)).unwrap();
    let child = Command::new("dnsmasq")
        .args(["--keep-in-foreground", "--log-facility=/dev/null"])
        .arg(format!("--conf-file={}", path.display()))
        .spawn()
        .expect("dnsmasq");
    ChildGuard(child)
}

/// `getent ahosts <pod>.<namespace>` (glibc: A and AAAA) from a node process against node
/// DNS whose upstream never answers: what a host-networked pod waits for on a site whose
/// uplink is down. Also one lookup with the configuration before pod domains existed.
async fn bench_offline_lookups(net: &TestNet, dir: &Path, pod: &Sandbox) {
    let resolv = dir.join("node-resolv.conf");
    std::fs::write(&resolv, format!("nameserver {}\n", net.gateway)).unwrap();
    let name = format!("{}.{}", pod.pod, pod.namespace);
    let mut samples = Vec::new();
    for _ in 0..OFFLINE_LOOKUPS {
        let started = Instant::now();
        let (ok, out) = node_process_getent(&resolv, &name);
        samples.push(started.elapsed());
        assert!(ok, "getent ahosts {name}: {out}");
    }
    summary("getent ahosts pod.ns, uplink down", &mut samples);
    let started = Instant::now();
    let (ok, _) = node_process_getent(&resolv, "nosuch-pod.default");
    println!("{:<34} {} ({})", "getent ahosts unknown.ns, uplink down", ms(started.elapsed()), if ok { "found?!" } else { "not found" });
}

/// One lookup with the shipped configuration of before pod domains (no `servers-file`, no
/// `local=//`), for comparison: what issue 12 measured as 15 s.
fn bench_offline_lookup_before(net: &TestNet, dir: &Path, pod: &Sandbox, upstream: u16) {
    let before: String = shipped_node_dns_config(net, Some(upstream))
        .lines()
        .filter(|l| !l.starts_with("servers-file=") && *l != "local=//")
        .map(|l| format!("{l}\n"))
        .collect();
    let path = dir.join("dnsmasq-before.conf");
    std::fs::write(&path, before).unwrap();
    let _dns = ChildGuard(
        Command::new("dnsmasq")
            .args(["--keep-in-foreground", "--log-facility=/dev/null"])
            .arg(format!("--conf-file={}", path.display()))
            .spawn()
            .expect("dnsmasq"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let name = format!("{}.{}", pod.pod, pod.namespace);
    let started = Instant::now();
    let (ok, _) = node_process_getent(&dir.join("node-resolv.conf"), &name);
    println!("{:<34} {} (found: {ok}; one lookup)", "same, configuration before", ms(started.elapsed()));
}

struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

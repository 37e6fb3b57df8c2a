//! Bridge-mode benchmark (prints numbers; asserts nothing): ADD and DEL through libcni's
//! cnitool, smarter-cni's bridge mode against Debian's reference `bridge` + `host-local`
//! (containernetworking-plugins) doing the same work (a bridge, a veth per pod, an address
//! from a store on disk, a default route, IP masquerade); and how late the hostnames service
//! puts a sandbox's hostname into its record after containerd writes it. Run with
//! scripts/bench.sh.

#[path = "../tests/cri/mod.rs"]
mod cri;

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PODS: usize = 40;
const HOSTNAMES: usize = 100;
const REFERENCE_DIR: &str = "/usr/lib/cni";

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(name: &str, samples: &mut [Duration]) -> Duration {
    let median = percentile(samples, 0.5);
    let p95 = percentile(samples, 0.95);
    println!(
        "{name:<44} median {:>8.2} ms  p95 {:>8.2} ms  (n={})",
        median.as_secs_f64() * 1e3,
        p95.as_secs_f64() * 1e3,
        samples.len()
    );
    median
}

fn sh(args: &[&str]) {
    let status = Command::new(args[0]).args(&args[1..]).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
    assert!(status.success(), "{args:?}");
}

fn plugin_binary() -> String {
    std::env::var("SMARTER_CNI_PLUGIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_smarter-cni").to_string())
}

struct Setup {
    name: String,
    conf_dir: PathBuf,
    bin_dir: PathBuf,
}

/// One conflist per contestant, each with its own bridge and subnet.
fn contestant(name: &str, bridge: &str, subnet: &str, gateway: &str, root: &Path) -> Setup {
    let conf_dir = root.join(name).join("net.d");
    let bin_dir = root.join(name).join("bin");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::create_dir_all(&bin_dir).unwrap();
    let plugin = if name == "smarter-cni" {
        std::os::unix::fs::symlink(plugin_binary(), bin_dir.join("smarter-cni")).unwrap();
        json!({"type": "smarter-cni", "mode": "bridge", "bridge": bridge, "subnet": subnet, "gateway": gateway,
               "leasesDir": root.join(name).join("leases"), "sandboxDir": root.join(name).join("sandboxes"),
               "dns": {"recordsDir": root.join(name).join("hosts"), "domainsFile": root.join(name).join("domains"),
                       "pidFile": root.join(name).join("dnsmasq.pid")}})
    } else {
        for p in ["bridge", "host-local"] {
            std::os::unix::fs::symlink(Path::new(REFERENCE_DIR).join(p), bin_dir.join(p)).unwrap();
        }
        json!({"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": true, "hairpinMode": true,
               "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet, "gateway": gateway}]],
                        "routes": [{"dst": "0.0.0.0/0"}], "dataDir": root.join(name).join("ipam")}})
    };
    let list = json!({"cniVersion": "1.0.0", "name": format!("bench-{name}"), "plugins": [plugin]});
    std::fs::write(conf_dir.join("10-bench.conflist"), list.to_string()).unwrap();
    Setup { name: format!("bench-{name}"), conf_dir, bin_dir }
}

fn cnitool(tool: &str, setup: &Setup, verb: &str, netns: &str, pod: usize) -> Duration {
    let started = Instant::now();
    let out = Command::new(tool)
        .args([verb, &setup.name, netns])
        .env("CNI_PATH", &setup.bin_dir)
        .env("NETCONFPATH", &setup.conf_dir)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod-{pod}"))
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "{} {verb}: {}", setup.name, String::from_utf8_lossy(&out.stderr));
    took
}

fn bench_add_del(tool: &str, root: &Path) {
    let ours = contestant("smarter-cni", "scbench0", "172.36.0.0/16", "172.36.0.1", root);
    let reference = contestant("reference", "scbench1", "172.37.0.0/16", "172.37.0.1", root);
    // smarter-cni's NAT rules come from `setup`, done once at boot: load them here too.
    let setup = Command::new(plugin_binary())
        .args(["setup", "--config"])
        .arg(ours.conf_dir.join("10-bench.conflist"))
        .arg("--bin-dir")
        .arg(&ours.bin_dir)
        .output()
        .unwrap();
    assert!(setup.status.success(), "setup: {}", String::from_utf8_lossy(&setup.stdout));
    let netns: Vec<String> = (0..PODS).map(|i| format!("scbench-{i}")).collect();
    for ns in &netns {
        let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
        sh(&["ip", "netns", "add", ns]);
    }
    let (mut ours_add, mut ours_del, mut ref_add, mut ref_del) = (vec![], vec![], vec![], vec![]);
    // Interleaved pod by pod, so both see the same machine state.
    for (i, ns) in netns.iter().enumerate() {
        let path = format!("/run/netns/{ns}");
        ours_add.push(cnitool(tool, &ours, "add", &path, i));
        ours_del.push(cnitool(tool, &ours, "del", &path, i));
        ref_add.push(cnitool(tool, &reference, "add", &path, i));
        ref_del.push(cnitool(tool, &reference, "del", &path, i));
    }
    let a = summary("ADD smarter-cni bridge mode (cnitool)", &mut ours_add);
    let b = summary("ADD reference bridge + host-local (cnitool)", &mut ref_add);
    println!("{:<44} {:.2}x", "ADD ratio (target <= 0.6)", a.as_secs_f64() / b.as_secs_f64());
    let a = summary("DEL smarter-cni bridge mode (cnitool)", &mut ours_del);
    let b = summary("DEL reference bridge + host-local (cnitool)", &mut ref_del);
    println!("{:<44} {:.2}x", "DEL ratio (target <= 0.6)", a.as_secs_f64() / b.as_secs_f64());
    for ns in &netns {
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
    }
    for bridge in ["scbench0", "scbench1"] {
        let _ = Command::new("ip").args(["link", "del", bridge]).status();
    }
    let _ = Command::new("nft").args(["delete", "table", "ip", "smarter-cni-bench-smarter-cni"]).status();
    // The reference bridge plugin leaves its masquerade chains in iptables' nat table.
    let _ = Command::new("sh")
        .arg("-c")
        .arg("iptables -t nat -S | grep -o 'CNI-[0-9a-f]*' | sort -u | while read c; do iptables -t nat -D POSTROUTING -s 172.37.0.0/16 -j $c 2>/dev/null; iptables -t nat -F $c; iptables -t nat -X $c; done")
        .status();
}

/// The hostnames service against containerd's way of writing a sandbox's hostname file
/// after ADD wrote the record: how long until the record holds the hostname.
fn bench_hostnames(root: &Path) {
    let dir = root.join("hostnames");
    let sandboxes = dir.join("sandboxes");
    let records = dir.join("hosts");
    std::fs::create_dir_all(&sandboxes).unwrap();
    std::fs::create_dir_all(&records).unwrap();
    // The records' staging folder, as the plugin's first ADD makes it (the store's lock).
    std::fs::create_dir_all(dir.join("hosts.staging")).unwrap();
    let conflist = dir.join("10-bench.conflist");
    let plugin = json!({"type": "smarter-cni", "mode": "bridge", "bridge": "scbench2", "subnet": "172.35.0.0/16",
        "leasesDir": dir.join("leases"), "sandboxDir": sandboxes,
        "dns": {"recordsDir": records, "domainsFile": dir.join("domains"), "pidFile": dir.join("dnsmasq.pid")}});
    std::fs::write(&conflist, json!({"cniVersion": "1.1.0", "name": "bench-hostnames", "plugins": [plugin]}).to_string()).unwrap();
    let mut service: Child = Command::new(plugin_binary())
        .args(["hostnames", "--config"])
        .arg(&conflist)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut samples = Vec::new();
    for i in 0..HOSTNAMES {
        let id = format!("{i:064x}");
        let record = format!("# smarter-cni record v1 container={id} address=172.35.0.{} pod=bench/pod-{i}\n172.35.0.{} pod-{i} pod-{i}.bench\n", i + 2, i + 2);
        std::fs::write(records.join(&id), record).unwrap();
        let sandbox = sandboxes.join(&id);
        std::fs::create_dir_all(&sandbox).unwrap();
        let started = Instant::now();
        std::fs::write(sandbox.join("hostname"), format!("host-{i}\n")).unwrap();
        let wanted = format!(" host-{i}");
        loop {
            if std::fs::read_to_string(records.join(&id)).unwrap_or_default().contains(&wanted) {
                break;
            }
            if started.elapsed() > Duration::from_secs(5) {
                panic!("hostname of sandbox {i} never reached its record");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        samples.push(started.elapsed());
    }
    summary("hostname in the record after containerd wrote it", &mut samples);
    let _ = service.kill();
    let _ = service.wait();
}

/// On a real containerd 2.1 (scripts/containerd.sh), which writes a sandbox's hostname file
/// after ADD and just before the sandbox's first process starts: how long after that write
/// the record holds the hostname (the record's mtime minus the hostname file's), and whether
/// it already did when RunPodSandbox returned.
async fn bench_containerd_hostnames() {
    let ctx = cri::TestCtx::get().await;
    let client = ctx.client().await;
    let (mut latencies, mut at_return) = (Vec::new(), 0);
    const SANDBOXES: usize = 20;
    for i in 0..SANDBOXES {
        let mut spec = cri::PodSpec::new("bench-hostname");
        spec.hostname = format!("bench-host-{i}");
        spec.command = None;
        let mut pod = cri::Pod::start(ctx, &client, spec).await.expect("sandbox");
        let record = cri::records_dir(ctx).join(&pod.id);
        let hostname_file = cri::sandbox_dir().join(&pod.id).join("hostname");
        let wanted = format!(" bench-host-{i}");
        if std::fs::read_to_string(&record).unwrap_or_default().contains(&wanted) {
            at_return += 1;
        }
        let started = Instant::now();
        while !std::fs::read_to_string(&record).unwrap_or_default().contains(&wanted) {
            assert!(started.elapsed() < Duration::from_secs(5), "hostname of {} never reached its record", pod.id);
            std::thread::sleep(Duration::from_micros(200));
        }
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).unwrap();
        latencies.push(mtime(&record).duration_since(mtime(&hostname_file)).unwrap_or_default());
        pod.stop_remove(&client).await.unwrap();
    }
    summary(&format!("containerd {}: hostname file -> record", ctx.runtime_version), &mut latencies);
    println!("{:<44} {at_return} of {SANDBOXES}", "record had the hostname when RunPodSandbox returned");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::env::var_os("SMARTER_CNI_TEST_CONTAINERD").is_some() {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(bench_containerd_hostnames());
    }
    let tool = std::env::var("SMARTER_CNI_TEST_CNITOOL").expect("SMARTER_CNI_TEST_CNITOOL: run scripts/bench.sh");
    let root = PathBuf::from(format!("/run/smarter-cni-bench/bridge-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    bench_add_del(&tool, &root);
    bench_hostnames(&root);
    let _ = std::fs::remove_dir_all(&root);
}

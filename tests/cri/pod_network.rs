//! The pod network under test: smarter-cni in bridge mode, prepared as a containerd gateway
//! boots: `smarter-cni setup` (bridge, forwarding, NAT rules), node DNS (Debian's dnsmasq with
//! the shipped configuration, edited for this network) and `smarter-cni hostnames`, then the
//! conflist. containerd finds `smarter-cni` and `loopback` (the same binary) in its bin dir.

use super::TestCtx;
use serde_json::json;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// dnsmasq and the hostnames service, kept for the test binary's life.
static NODE_SERVICES: Mutex<Vec<std::process::Child>> = Mutex::new(Vec::new());

/// SMARTER_CNI_PLUGIN, else the binary cargo built for the tests (the demo example, which
/// cargo gives no such path, sets the variable).
pub fn plugin_binary() -> String {
    std::env::var("SMARTER_CNI_PLUGIN")
        .ok()
        .or(option_env!("CARGO_BIN_EXE_smarter-cni").map(str::to_string))
        .expect("SMARTER_CNI_PLUGIN: the smarter-cni binary to install")
}

fn state(test: &TestCtx) -> PathBuf {
    test.work_dir.join("node")
}

pub fn records_dir(test: &TestCtx) -> PathBuf {
    state(test).join("hosts")
}

pub fn leases_dir(test: &TestCtx) -> PathBuf {
    state(test).join("leases")
}

/// containerd's sandboxes folder (where it writes each pod's `hostname`).
pub fn sandbox_dir() -> PathBuf {
    let root = std::env::var("SMARTER_CNI_TEST_CONTAINERD_CRI_ROOT")
        .expect("SMARTER_CNI_TEST_CONTAINERD_CRI_ROOT is not set: eval \"$(scripts/containerd.sh env 2.1)\"");
    Path::new(&root).join("sandboxes")
}

/// The shipped containerd-variant conflist, edited for this daemon's network and folders.
pub fn pod_network_conflist(test: &TestCtx) -> String {
    let shipped: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/images/rootfs-containerd/etc/cni/net.d/10-smarter-cni.conflist"))
            .unwrap(),
    )
    .unwrap();
    let mut list = shipped.clone();
    list["name"] = json!(test.network);
    let plugin = &mut list["plugins"][0];
    assert_eq!(plugin["mode"], "bridge", "the shipped containerd conflist is bridge mode");
    for (key, value) in [
        ("network", json!(test.network)),
        ("bridge", json!(test.bridge)),
        ("subnet", json!(test.subnet)),
        ("gateway", json!(test.gateway)),
        ("leasesDir", json!(leases_dir(test))),
        ("sandboxDir", json!(sandbox_dir())),
        (
            "dns",
            json!({"mode": "host", "recordsDir": records_dir(test), "domainsFile": state(test).join("domains"),
                   "pidFile": state(test).join("dnsmasq.pid")}),
        ),
    ] {
        plugin[key] = value;
    }
    list.to_string()
}

/// The plugins containerd finds in its CNI bin dir, by type: both names of our binary.
pub fn pod_network_plugins() -> Vec<(&'static str, PathBuf)> {
    let dir = PathBuf::from(format!("/run/smarter-cni-test/cri-plugins-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    ["smarter-cni", "loopback"]
        .iter()
        .map(|name| {
            let link = dir.join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(plugin_binary(), &link).unwrap();
            (*name, link)
        })
        .collect()
}

/// Boot-time node preparation, before the conflist is installed (STATUS needs the NAT rules).
pub fn pod_network_prepare(test: &TestCtx) {
    let dir = state(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("net.d")).unwrap();
    let conflist = dir.join("net.d").join("10-smarter-cni.conflist");
    std::fs::write(&conflist, pod_network_conflist(test)).unwrap();
    let out = Command::new(plugin_binary())
        .arg("setup")
        .arg("--config")
        .arg(&conflist)
        .arg("--bin-dir")
        .arg(dir.join("bin"))
        .output()
        .unwrap();
    assert!(out.status.success(), "smarter-cni setup: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Services an earlier, killed run of this binary left behind watch folders now gone.
    for service in [format!("--conf-file={}", dir.join("dnsmasq.conf").display()), format!("hostnames --config {}", conflist.display())] {
        let _ = Command::new("pkill").arg("-f").arg("--").arg(&service).status();
        // Gone before the new one starts: a dying dnsmasq still holds port 53.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while Command::new("pgrep").arg("-f").arg("--").arg(&service).stdout(Stdio::null()).status().is_ok_and(|s| s.success()) {
            assert!(std::time::Instant::now() < deadline, "{service} does not stop");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    let mut services = NODE_SERVICES.lock().unwrap();
    services.push(spawn_with_parent(Command::new("dnsmasq").arg("--keep-in-foreground").arg(format!("--conf-file={}", node_dns_config(test).display()))));
    services.push(spawn_with_parent(Command::new(plugin_binary()).arg("hostnames").arg("--config").arg(&conflist)));
    // dnsmasq answers once it has bound the gateway address.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::UdpSocket::bind((test.gateway.as_str(), 53)).is_ok() {
        assert!(std::time::Instant::now() < deadline, "node DNS did not start on {}:53", test.gateway);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A node service that dies with the test binary (PR_SET_PDEATHSIG), so nothing outlives it.
/// The signal follows the thread that forked, so a thread that lives as long as the process
/// forks it (each test's runtime threads end with the test).
fn spawn_with_parent(cmd: &mut Command) -> std::process::Child {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut cmd = std::mem::replace(cmd, Command::new("true"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        tx.send(cmd.spawn().map_err(|e| format!("{cmd:?}: {e}"))).unwrap();
        loop {
            std::thread::park();
        }
    });
    rx.recv().unwrap().unwrap_or_else(|e| panic!("{e}"))
}

/// The shipped node DNS configuration, edited for this network; no upstream at all (the
/// gateway's uplink is down in these tests).
fn node_dns_config(test: &TestCtx) -> PathBuf {
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/images/rootfs/etc/smarter-cni/dnsmasq.conf")).unwrap();
    let mut edited = shipped
        .replace("listen-address=172.38.0.1", &format!("listen-address={}", test.gateway))
        .replace("hostsdir=/run/smarter-cni/mynet/hosts", &format!("hostsdir={}", records_dir(test).display()))
        .replace("servers-file=/run/smarter-cni/mynet/domains", &format!("servers-file={}", state(test).join("domains").display()))
        .replace("pid-file=/run/smarter-cni/mynet/dnsmasq.pid", &format!("pid-file={}", state(test).join("dnsmasq.pid").display()));
    assert!(!edited.contains("172.38.0.1") && !edited.contains("/run/smarter-cni/mynet"), "every setting edited");
    // No upstream: what node DNS answers here it answers from the records alone. As root, so
    // that it dies with the test binary (a credentials change clears PR_SET_PDEATHSIG).
    edited.push_str("no-resolv\nuser=root\n");
    let path = state(test).join("dnsmasq.conf");
    std::fs::write(&path, edited).unwrap();
    path
}

/// What the pod network still holds for a sandbox: its lease, its record.
pub fn pod_network_leftovers(test: &TestCtx, sandbox_id: &str) -> Vec<String> {
    let mut left = Vec::new();
    for entry in std::fs::read_dir(leases_dir(test)).into_iter().flatten().flatten() {
        if std::fs::read_to_string(entry.path()).is_ok_and(|c| c.contains(&format!("container={sandbox_id}"))) {
            left.push(format!("lease {}", entry.path().display()));
        }
    }
    if records_dir(test).join(sandbox_id).exists() {
        left.push(format!("DNS record {}", records_dir(test).join(sandbox_id).display()));
    }
    left
}

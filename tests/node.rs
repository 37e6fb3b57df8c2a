//! Node DNS, setup, status and the built-in loopback plugin, on real engines, real dnsmasq
//! and real network namespaces.

mod common;

use common::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

const GENEROUS: Duration = Duration::from_secs(10);

/// Stands in for the internet: a dnsmasq on loopback that knows one name. Node DNS in
/// these tests forwards here, never to the machine's real resolvers.
const UPSTREAM_NAME: &str = "upstream.example";
const UPSTREAM_ADDRESS: &str = "192.0.2.44";

struct Upstream {
    child: Child,
    port: u16,
}

impl Upstream {
    fn start() -> Upstream {
        static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let port = 20000 + (std::process::id() % 5000) as u16 * 4 + NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let child = Command::new("dnsmasq")
            .args(["--keep-in-foreground", "--no-resolv", "--no-hosts", "--listen-address=127.0.0.1", "--bind-interfaces", "--pid-file="])
            .arg(format!("--port={port}"))
            .arg(format!("--address=/{UPSTREAM_NAME}/{UPSTREAM_ADDRESS}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("dnsmasq from dnsmasq-base");
        Upstream { child, port }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped dnsmasq configuration, edited the way an operator edits it for another
/// subnet (listen address, records folder, pod domains, pid file) and other upstream servers.
fn node_dnsmasq_config(net: &TestNet, dir: &Path, upstream: &Upstream) -> PathBuf {
    node_dnsmasq_config_upstream(net, dir, upstream.port)
}

fn node_dnsmasq_config_upstream(net: &TestNet, dir: &Path, upstream_port: u16) -> PathBuf {
    let path = dir.join("dnsmasq.conf");
    std::fs::write(&path, shipped_node_dns_config(net, Some(upstream_port))).unwrap();
    path
}

/// Debian's dnsmasq binary, as smarter-cni-dns.service runs it.
struct NodeDns {
    child: Child,
    config: PathBuf,
}

impl NodeDns {
    fn start(config: &Path) -> NodeDns {
        // Its log beside its config, for when a test fails.
        let child = Command::new("dnsmasq")
            .arg("--keep-in-foreground")
            .arg(format!("--log-facility={}", config.with_extension("log").display()))
            .arg(format!("--conf-file={}", config.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(config.with_extension("stderr")).unwrap())
            .spawn()
            .expect("dnsmasq from dnsmasq-base");
        NodeDns { child, config: config.to_path_buf() }
    }

    fn restart(&mut self) {
        self.stop();
        *self = NodeDns::start(&self.config.clone());
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeDns {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `dig +short` from the host network namespace.
fn dig(server: &str, name: &str) -> String {
    let out = Command::new("dig")
        .args(["+short", "+time=1", "+tries=1", &format!("@{server}"), name, "A"])
        .output()
        .expect("dig from bind9-dnsutils");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn dig_until(server: &str, name: &str, expected: &str) -> bool {
    eventually(GENEROUS, || {
        let got = dig(server, name);
        async move { got == expected }
    })
    .await
}

fn work_dir(tag: &str) -> PathBuf {
    let dir = PathBuf::from(format!("/run/smarter-cni-test/node-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Makes the Docker network (as `setup` would) so the gateway address exists for dnsmasq.
async fn ensure_network(net: &TestNet) {
    let dir = work_dir(&format!("net-{}", net.name));
    let conflist = dir.join("10-smarter-cni.conflist");
    std::fs::write(&conflist, conflist_for(net).to_string()).unwrap();
    let out = run_cli(&["setup", "--config", conflist.to_str().unwrap(), "--bin-dir", dir.join("bin").to_str().unwrap()]);
    assert!(out.status.success(), "setup: {}", String::from_utf8_lossy(&out.stdout));
}

fn conflist_for(net: &TestNet) -> serde_json::Value {
    let mut plugin = net.config("1.0.0");
    for key in ["cniVersion", "name"] {
        plugin.as_object_mut().unwrap().remove(key);
    }
    json!({"cniVersion": "1.0.0", "name": net.name, "plugins": [plugin]})
}

fn run_cli(args: &[&str]) -> std::process::Output {
    let mut cmd = plugin_command(None);
    cmd.args(args).env_remove("CNI_COMMAND").output().expect("run smarter-cni")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_mode_node_dns_answers_pod_names_and_follows_del_gc_and_restarts() {
    let net = TestNet::new("hostdns");
    ensure_network(&net).await;
    let dir = work_dir("hostdns");
    let upstream = Upstream::start();
    let mut dns = NodeDns::start(&node_dnsmasq_config(&net, &dir, &upstream));
    let a = Sandbox::start("sensor-a1", "iot", "sensor", &net.gateway).await;
    let b = Sandbox::start("relay-b2", "iot", "relay", &net.gateway).await;
    let ip_a = result_ip(&add(&net, &a, "1.0.0").await.ok().json());
    let ip_b = result_ip(&add(&net, &b, "1.0.0").await.ok().json());

    // From the host network namespace, every name form.
    for (name, ip) in [("sensor", &ip_a), ("sensor-a1", &ip_a), ("sensor-a1.iot", &ip_a), ("relay-b2.iot", &ip_b)] {
        assert!(dig_until(&net.gateway, name, ip).await, "{name} -> {ip}, got {:?}", dig(&net.gateway, name));
    }

    // From a host-networked pod: kubelet points its resolv.conf at the cluster DNS (= node DNS).
    let host_pod = host_networked_pod(&net.gateway).await;
    for (name, ip) in [("sensor-a1", ip_a.as_str()), (UPSTREAM_NAME, UPSTREAM_ADDRESS)] {
        let (code, out) = exec_in(&host_pod, &["getent", "hosts", name]).await;
        assert_eq!((code, out.split_whitespace().next()), (0, Some(ip)), "host-networked pod: {name}: {out}");
    }

    // A pod resolves its peers through the embedded DNS and an outside name through the
    // chain: embedded DNS, then node DNS, then the upstream server.
    for (name, ip) in [("relay", ip_b.as_str()), (UPSTREAM_NAME, UPSTREAM_ADDRESS)] {
        let (code, out) = a.exec(&["getent", "hosts", name]).await;
        assert_eq!((code, out.split_whitespace().next()), (0, Some(ip)), "pod: {name}: {out}");
    }

    // Records survive a dnsmasq restart (they are files, re-read at start).
    dns.restart();
    assert!(dig_until(&net.gateway, "relay", &ip_b).await, "after restart");

    // DEL removes the record, and node DNS stops answering the name.
    del(&net, &a, "1.0.0").await.ok();
    assert!(dig_until(&net.gateway, "sensor-a1", "").await, "gone after DEL");

    // GC removes the records of sandboxes the runtime no longer lists.
    let mut conf = net.config("1.1.0");
    conf["cni.dev/valid-attachments"] = json!([]);
    plugin(vec![("CNI_COMMAND".into(), "GC".into())], conf.to_string().into_bytes()).await.ok();
    assert!(net.records().is_empty());
    assert!(dig_until(&net.gateway, "relay", "").await, "gone after GC");

    remove_container(&host_pod).await;
    for pod in [&a, &b] {
        pod.remove().await;
    }
    drop(dns);
    net.cleanup().await;
}

/// What dig says: the status and the answer records' data.
fn dig_full(server: &str, name: &str, qtype: &str) -> (String, Vec<String>) {
    let out = Command::new("dig")
        .args(["+time=1", "+tries=1", "+noall", "+comments", "+answer", &format!("@{server}"), name, qtype])
        .output()
        .expect("dig from bind9-dnsutils");
    let text = String::from_utf8_lossy(&out.stdout);
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or("no answer")
        .to_string();
    let answers = text
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect();
    (status, answers)
}

/// Node DNS with the uplink down: every name the pods own is answered on the node (A from
/// the records, empty AAAA, NXDOMAIN for unknown names of a namespace), none of them
/// reaches the upstream, and names that are not the pods' still do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_dns_answers_pod_names_itself_with_the_uplink_down() {
    let net = TestNet::new("offline");
    ensure_network(&net).await;
    let dir = work_dir("offline");
    let hole = BlackHole::start();
    let _dns = NodeDns::start(&node_dnsmasq_config_upstream(&net, &dir, hole.port));
    let web = Sandbox::start("web-0", "plant", "web", &net.gateway).await;
    let api = Sandbox::start("api-0", "app", "api", &net.gateway).await; // `app` is a public TLD
    let db = Sandbox::start("db.v1", "plant", "db", &net.gateway).await; // a pod name with a dot
    let mut forms = Vec::new();
    for pod in [&web, &api, &db] {
        let ip = result_ip(&add(&net, pod, "1.0.0").await.ok().json());
        for name in [pod.hostname.clone(), pod.pod.clone(), format!("{}.{}", pod.pod, pod.namespace)] {
            forms.push((name, ip.clone()));
        }
    }
    assert_eq!(net.claimed_domains(), ["api-0.app", "db.v1", "plant"], "the public TLD `app` is not claimed whole");

    for (name, ip) in &forms {
        assert!(dig_until(&net.gateway, name, ip).await, "A {name}");
        assert_eq!(dig_full(&net.gateway, name, "AAAA"), ("NOERROR".into(), vec![]), "AAAA {name}");
        assert_eq!(dig_full(&net.gateway, name, "MX"), ("NOERROR".into(), vec![]), "MX {name}");
    }
    for unknown in ["nosuch.plant", "nosuch", "x.web-0.plant"] {
        assert_eq!(dig_full(&net.gateway, unknown, "A").0, "NXDOMAIN", "{unknown}");
        assert_eq!(dig_full(&net.gateway, unknown, "AAAA").0, "NXDOMAIN", "{unknown}");
    }

    // glibc's getent ahosts from a node process and from a host-networked pod.
    let resolv = dir.join("node-resolv.conf");
    std::fs::write(&resolv, format!("nameserver {}\n", net.gateway)).unwrap();
    let host_pod = host_networked_pod(&net.gateway).await;
    for (name, ip) in &forms {
        let (ok, out) = node_process_getent(&resolv, name);
        assert!(ok && out.starts_with(&format!("{ip} ")), "node process: getent ahosts {name}: {out}");
        let (code, out) = exec_in(&host_pod, &["getent", "ahosts", name]).await;
        assert!(code == 0 && out.starts_with(&format!("{ip} ")), "host-networked pod: getent ahosts {name}: {out}");
    }
    let pod_queries: Vec<String> = hole
        .received()
        .into_iter()
        .filter(|q| forms.iter().any(|(name, _)| q == name || q.ends_with(&format!(".{name}"))) || q.ends_with(".plant"))
        .collect();
    assert!(pod_queries.is_empty(), "pod names reached the upstream: {pod_queries:?}");

    // Names that are not the pods' still go upstream, under a TLD-named namespace too.
    for outside in ["example.com", "nosuch.app"] {
        dig_full(&net.gateway, outside, "A");
        assert!(hole.received().iter().any(|q| q == outside), "{outside} not forwarded: {:?}", hole.received());
    }

    // The last pod of a namespace leaves: its names are no longer claimed.
    del(&net, &api, "1.0.0").await.ok();
    assert_eq!(net.claimed_domains(), ["db.v1", "plant"]);
    for pod in [&web, &db] {
        del(&net, pod, "1.0.0").await.ok();
    }
    assert!(net.claimed_domains().is_empty());
    dig_full(&net.gateway, "nosuch.plant", "A");
    assert!(hole.received().iter().any(|q| q == "nosuch.plant"), "an unclaimed namespace is forwarded again");

    remove_container(&host_pod).await;
    for pod in [&web, &api, &db] {
        pod.remove().await;
    }
    net.cleanup().await;
}

/// `cmd sub --help` prints that command's help and exits 0, as every CLI does.
#[test]
fn subcommands_print_their_help() {
    for (args, expected) in [
        (&["setup", "--help"][..], "Usage: smarter-cni setup"),
        (&["status", "--help"][..], "Usage: smarter-cni status"),
        (&["status", "--json", "-h"][..], "Usage: smarter-cni status"),
        (&["--help"][..], "smarter-cni setup"),
    ] {
        let out = run_cli(args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && stdout.contains(expected) && stdout.contains("--config FILE"), "{args:?}: {stdout}");
    }
    let out = run_cli(&["setup", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus"));
}

async fn host_networked_pod(cluster_dns: &str) -> String {
    let docker = docker();
    let created = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            bollard::models::ContainerCreateBody {
                image: Some(TEST_IMAGE.into()),
                host_config: Some(bollard::models::HostConfig { network_mode: Some("host".into()), ..Default::default() }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    docker.start_container(&created.id, None::<bollard::query_parameters::StartContainerOptions>).await.unwrap();
    let inspect = docker.inspect_container(&created.id, None::<bollard::query_parameters::InspectContainerOptions>).await.unwrap();
    std::fs::write(inspect.resolv_conf_path.unwrap(), kubelet_resolv_conf("iot", cluster_dns)).unwrap();
    created.id
}

async fn remove_container(id: &str) {
    let _ = docker()
        .remove_container(id, Some(bollard::query_parameters::RemoveContainerOptions { force: true, ..Default::default() }))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_brings_lo_up_and_down_in_a_real_namespace() {
    let ns = format!("sct-lo-{}", std::process::id());
    let status = Command::new("ip").args(["netns", "add", &ns]).status().unwrap();
    assert!(status.success());
    let netns = format!("/run/netns/{ns}");
    let lo_state = || {
        let out = Command::new("ip").args(["-n", &ns, "-o", "link", "show", "lo"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(!lo_state().contains("UP,"), "starts down: {}", lo_state());
    // Exactly as cri-dockerd calls it: the pod's CNI_IFNAME (eth0), its CNI_ARGS, and its
    // built-in 0.2.0 list.
    let env = |command: &str| {
        vec![
            ("CNI_COMMAND".to_string(), command.to_string()),
            ("CNI_CONTAINERID".to_string(), "lo-test".to_string()),
            ("CNI_NETNS".to_string(), netns.clone()),
            ("CNI_IFNAME".to_string(), "eth0".to_string()),
            ("CNI_ARGS".to_string(), "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=lo-0;K8S_POD_INFRA_CONTAINER_ID=lo-test".to_string()),
            ("CNI_PATH".to_string(), "/opt/cni/bin".to_string()),
        ]
    };
    let conf = CRI_DOCKERD_LOOPBACK_CONF.as_bytes();
    let out = run_plugin_as(Some("loopback"), &env("ADD"), conf);
    assert_eq!(out.ok().json()["ip4"]["ip"], "127.0.0.1/8");
    assert!(lo_state().contains("UP,"), "up after ADD: {}", lo_state());
    run_plugin_as(Some("loopback"), &env("DEL"), conf).ok();
    assert!(!lo_state().contains("UP,"), "down after DEL: {}", lo_state());
    // CHECK (0.4.0+, which cri-dockerd never calls) and the current result shape.
    let current = br#"{"cniVersion":"1.0.0","name":"cni-loopback","type":"loopback"}"#;
    let doc = run_plugin_as(Some("loopback"), &env("ADD"), current).ok().json();
    assert_eq!(doc["interfaces"][0]["name"], "lo");
    assert_eq!(doc["ips"][0]["address"], "127.0.0.1/8");
    run_plugin_as(Some("loopback"), &env("CHECK"), current).ok();
    run_plugin_as(Some("loopback"), &env("DEL"), current).ok();
    assert_eq!(run_plugin_as(Some("loopback"), &env("CHECK"), current).error_code(), 101);
    Command::new("ip").args(["netns", "del", &ns]).status().unwrap();
    // The namespace is gone: DEL still succeeds.
    run_plugin_as(Some("loopback"), &env("DEL"), conf).ok();
    // A pod name Kubernetes accepts but DNS cannot carry never fails loopback.
    let mut long = env("DEL");
    long[4].1 = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={}-0;K8S_POD_INFRA_CONTAINER_ID=lo-test", "a".repeat(70));
    run_plugin_as(Some("loopback"), &long, conf).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_twice_changes_nothing_the_second_time() {
    let net = TestNet::new("setup");
    let dir = work_dir("setup");
    let source = dir.join("share/10-smarter-cni.conflist");
    std::fs::create_dir_all(source.parent().unwrap()).unwrap();
    std::fs::write(&source, serde_json::to_string_pretty(&conflist_for(&net)).unwrap()).unwrap();
    let args = |_: ()| {
        vec![
            "setup".to_string(),
            "--config".into(),
            source.display().to_string(),
            "--conf-dir".into(),
            dir.join("net.d").display().to_string(),
            "--bin-dir".into(),
            dir.join("bin").display().to_string(),
        ]
    };
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_cli(&refs);
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string())
    };
    let (ok, first) = run(args(()));
    assert!(ok, "{first}");
    assert!(first.contains("installed"), "{first}");
    assert!(first.contains("created Docker network"), "{first}");
    assert!(first.contains("linked"), "{first}");
    let network_id = docker()
        .inspect_network(&net.name, None::<bollard::query_parameters::InspectNetworkOptions>)
        .await
        .unwrap()
        .id;
    let installed = dir.join("net.d/10-smarter-cni.conflist");
    let mtime = std::fs::metadata(&installed).unwrap().modified().unwrap();

    let (ok, second) = run(args(()));
    assert!(ok, "{second}");
    assert!(second.contains("setup: 0 changed, 0 warnings, 0 errors"), "{second}");
    assert!(!second.contains("changed  "), "{second}");
    let network_id_after = docker()
        .inspect_network(&net.name, None::<bollard::query_parameters::InspectNetworkOptions>)
        .await
        .unwrap()
        .id;
    assert_eq!(network_id, network_id_after, "network kept");
    assert_eq!(mtime, std::fs::metadata(&installed).unwrap().modified().unwrap(), "conflist untouched");
    assert_eq!(std::fs::read_link(dir.join("bin/loopback")).unwrap(), std::fs::canonicalize(plugin_binary()).unwrap_or_else(|_| PathBuf::from(plugin_binary())));
    net.cleanup().await;
}

fn plugin_binary() -> String {
    std::env::var("SMARTER_CNI_PLUGIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_smarter-cni").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_never_removes_a_network_with_pods_attached() {
    let net = TestNet::new("keepnet");
    let pod = Sandbox::start("keep-pod", "default", "keeppod", "10.43.0.10").await;
    add(&net, &pod, "1.0.0").await.ok();
    // The operator changes the subnet in the conflist while a pod runs.
    let mut changed = TestNet { name: net.name.clone(), subnet: String::new(), gateway: String::new(), records_dir: net.records_dir.clone(), extra: json!({}) };
    (changed.subnet, changed.gateway) = next_subnet();
    let dir = work_dir("keepnet");
    let conflist = dir.join("10-smarter-cni.conflist");
    std::fs::write(&conflist, conflist_for(&changed).to_string()).unwrap();
    let out = run_cli(&["setup", "--config", conflist.to_str().unwrap(), "--bin-dir", dir.join("bin").to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("setup will not remove it"), "{text}");
    assert!(pod.endpoints().await.contains_key(&net.name), "pod still attached");
    // Once the pod is gone, setup recreates the network with the new subnet.
    del(&net, &pod, "1.0.0").await.ok();
    let out = run_cli(&["setup", "--config", conflist.to_str().unwrap(), "--bin-dir", dir.join("bin").to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("recreated"), "{text}");
    pod.remove().await;
    net.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_healthy_then_names_each_broken_part() {
    let net = TestNet::new("status");
    let dir = work_dir("status");
    let conf_dir = dir.join("net.d");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let conflist = conf_dir.join("10-smarter-cni.conflist");
    std::fs::write(&conflist, conflist_for(&net).to_string()).unwrap();
    let bin = dir.join("bin");
    let setup = run_cli(&["setup", "--config", conflist.to_str().unwrap(), "--bin-dir", bin.to_str().unwrap()]);
    assert!(setup.status.success());
    let upstream = Upstream::start();
    let dnsmasq_config = node_dnsmasq_config(&net, &dir, &upstream);
    let mut dns = NodeDns::start(&dnsmasq_config);
    let pod = Sandbox::start("status-pod", "default", "statuspod", &net.gateway).await;
    let ip = result_ip(&add(&net, &pod, "1.0.0").await.ok().json());
    let status = |conflist: &Path| {
        let out = run_cli(&[
            "status", "--json", "--config", conflist.to_str().unwrap(), "--bin-dir", bin.to_str().unwrap(),
            "--dnsmasq-config", dnsmasq_config.to_str().unwrap(),
        ]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json prints JSON");
        (out.status.code(), doc)
    };
    let healthy = eventually(GENEROUS, || {
        let (code, _) = status(&conflist);
        async move { code == Some(0) }
    })
    .await;
    let (code, doc) = status(&conflist);
    assert!(healthy && code == Some(0), "{doc:#}");
    let row = &doc["pods"][0];
    assert_eq!((row["namespace"].as_str(), row["pod"].as_str(), row["ip"].as_str()), (Some("default"), Some("status-pod"), Some(ip.as_str())));
    assert_eq!((row["record"].as_bool(), row["resolves"].as_bool()), (Some(true), Some(true)), "{doc:#}");

    let problem_about = |doc: &serde_json::Value, word: &str| {
        doc["problems"].as_array().unwrap().iter().any(|p| p["problem"].as_str().unwrap_or("").contains(word) && !p["fix"].as_str().unwrap_or("").is_empty())
    };
    // DNS down.
    dns.stop();
    let (code, doc) = status(&conflist);
    assert_eq!(code, Some(1));
    assert!(problem_about(&doc, "does not answer"), "{doc:#}");
    // A caller that needs only some parts (the package's post-install check) can say so.
    let require = |parts: &str| {
        run_cli(&["status", "--config", conflist.to_str().unwrap(), "--bin-dir", bin.to_str().unwrap(), "--require", parts])
            .status
            .code()
    };
    assert_eq!(require("engine,network,loopback"), Some(0));
    assert_eq!(require("engine,dns"), Some(1));
    dns.restart();
    // Conflist shadowed by a file sorting first.
    std::fs::write(conf_dir.join("00-other.conflist"), "{}").unwrap();
    let (code, doc) = status(&conflist);
    assert_eq!(code, Some(1));
    assert!(problem_about(&doc, "shadows"), "{doc:#}");
    std::fs::remove_file(conf_dir.join("00-other.conflist")).unwrap();
    // Engine down.
    let mut broken = conflist_for(&net);
    broken["plugins"][0]["dockerHost"] = json!("unix:///run/smarter-cni-test/no-engine.sock");
    let broken_path = conf_dir.join("10-smarter-cni.conflist");
    let original = std::fs::read(&broken_path).unwrap();
    std::fs::write(&broken_path, broken.to_string()).unwrap();
    let (code, doc) = status(&conflist);
    assert_eq!(code, Some(1));
    assert!(problem_about(&doc, "is dockerd running"), "{doc:#}");
    std::fs::write(&broken_path, original).unwrap();
    // Network missing.
    del(&net, &pod, "1.0.0").await.ok();
    pod.remove().await;
    docker().remove_network(&net.name).await.unwrap();
    let (code, doc) = status(&conflist);
    assert_eq!(code, Some(1));
    assert!(problem_about(&doc, "does not exist"), "{doc:#}");
    // Its gateway is not on this node any more: node DNS is not probed (the query would
    // leave through the default route).
    assert!(doc["checks"]["dns"]["detail"].as_str().unwrap().contains("not checked"), "{doc:#}");
    drop(dns);
    net.cleanup().await;
}

/// A dnsmasq image built from Debian's binary (the harness's tools image, retagged), saved
/// to an archive and removed from the engine, so `setup` must load it from the file.
async fn dns_image_archive(dir: &Path) -> (String, PathBuf) {
    use futures_util::StreamExt;
    let docker = docker();
    let repo = "smarter-cni-test/dnsmasq".to_string();
    let tag = format!("{}", std::process::id());
    let image = format!("{repo}:{tag}");
    docker
        .tag_image(TEST_IMAGE, Some(bollard::query_parameters::TagImageOptions { repo: Some(repo), tag: Some(tag) }))
        .await
        .unwrap();
    let mut bytes = Vec::new();
    let mut stream = docker.export_image(&image);
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    let archive = dir.join("dnsmasq-image.tar");
    std::fs::write(&archive, bytes).unwrap();
    docker.remove_image(&image, None::<bollard::query_parameters::RemoveImageOptions>, None).await.unwrap();
    (image, archive)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_mode_dns_answers_and_its_address_never_goes_to_a_pod() {
    let mut net = TestNet::new("ctrdns");
    let dir = work_dir("ctrdns");
    let (image, archive) = dns_image_archive(&dir).await;
    let dns_name = format!("{}-dns", net.name);
    net.extra = json!({"dns": {"mode": "container", "image": image, "imageArchive": archive, "containerName": dns_name}});
    let dns_address = net.gateway.rsplit_once('.').map(|(prefix, _)| format!("{prefix}.2")).unwrap();

    // Thirty pods start before the DNS container exists; none may take its address.
    let mut pods = Vec::new();
    for i in 0..30 {
        pods.push(Sandbox::start(&format!("early-{i}"), "default", &format!("early{i}"), &dns_address).await);
    }
    let adds = futures_util::future::join_all(pods.iter().map(|p| add(&net, p, "1.0.0"))).await;
    let ips: Vec<String> = adds.iter().map(|o| result_ip(&o.ok().json())).collect();
    assert!(!ips.contains(&dns_address), "a pod took the DNS address: {ips:?}");

    let conflist = dir.join("10-smarter-cni.conflist");
    std::fs::write(&conflist, conflist_for(&net).to_string()).unwrap();
    let setup = || {
        let out = run_cli(&["setup", "--config", conflist.to_str().unwrap(), "--bin-dir", dir.join("bin").to_str().unwrap()]);
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string())
    };
    let (ok, text) = setup();
    assert!(ok, "{text}");
    assert!(text.contains(&format!("created DNS container {dns_name} at {dns_address}")), "{text}");
    let (ok, text) = setup();
    assert!(ok && text.contains("setup: 0 changed"), "second setup changes nothing: {text}");

    // Host processes ask the DNS container; it forwards to the embedded DNS, which knows
    // every pod's names.
    for (pod, ip) in pods.iter().zip(&ips).take(3) {
        for name in [pod.pod.clone(), pod.hostname.clone()] {
            let ip = ip.clone();
            let found = eventually(GENEROUS, || {
                let got = dig(&dns_address, &name);
                let ip = ip.clone();
                async move { got == ip }
            })
            .await;
            assert!(found, "{name} via {dns_address}: {:?}", dig(&dns_address, &name));
        }
    }
    let status = run_cli(&["status", "--config", conflist.to_str().unwrap(), "--bin-dir", dir.join("bin").to_str().unwrap()]);
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(text.contains(&format!("container {dns_name} at {dns_address}")), "{text}");

    for pod in &pods {
        del(&net, pod, "1.0.0").await.ok();
        pod.remove().await;
    }
    remove_container(&dns_name).await;
    let _ = docker().remove_image(&image, None::<bollard::query_parameters::RemoveImageOptions>, None).await;
    net.cleanup().await;
}

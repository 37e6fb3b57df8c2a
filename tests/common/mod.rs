//! Test harness: a real Docker engine (SMARTER_CNI_TEST_DOCKER_HOST), pod sandboxes made the
//! way cri-dockerd makes them, and the plugin run as a real process with env + stdin.
#![allow(dead_code)]

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, InspectContainerOptions, RemoveContainerOptions};
use bollard::Docker;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const TEST_IMAGE: &str = "smarter-cni-test/tools:1";
pub const SANDBOX_LABEL: (&str, &str) = ("io.kubernetes.docker.type", "podsandbox");

/// The engine under test, e.g. unix:///run/smarter-cni-test/d26/docker.sock.
pub fn docker_host() -> String {
    std::env::var("SMARTER_CNI_TEST_DOCKER_HOST").expect(
        "SMARTER_CNI_TEST_DOCKER_HOST is not set: integration tests need a real engine; run scripts/test.sh",
    )
}

pub fn docker_socket() -> String {
    docker_host().trim_start_matches("unix://").to_string()
}

pub fn docker() -> Docker {
    Docker::connect_with_unix(&docker_socket(), 60, bollard::API_DEFAULT_VERSION).expect("engine socket")
}

pub async fn docker_negotiated() -> Docker {
    docker().negotiate_version().await.expect("engine answers /version")
}

/// Two engines may run their suites on one host at once, so each picks its own /16 base
/// (SMARTER_CNI_TEST_SUBNET_BASE, e.g. "172.30"); every test network gets its own /24.
pub fn next_subnet() -> (String, String) {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let base = std::env::var("SMARTER_CNI_TEST_SUBNET_BASE").unwrap_or_else(|_| "172.30".to_string());
    let n = NEXT.fetch_add(1, Ordering::SeqCst) + 60 * test_binary_slot();
    assert!(n < 255, "out of test subnets");
    (format!("{base}.{n}.0/24"), format!("{base}.{n}.1"))
}

/// Test binaries run one after another, but give each its own range anyway so leftovers of
/// a crashed binary never collide with the next one.
fn test_binary_slot() -> u32 {
    let exe = std::env::current_exe().unwrap_or_default();
    let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.starts_with("node") {
        1
    } else if name.starts_with("cnitool") {
        2
    } else if name.starts_with("hostport") {
        3
    } else {
        0
    }
}

/// A network configuration for one test, with its own Docker network, subnet and records.
pub struct TestNet {
    pub name: String,
    pub subnet: String,
    pub gateway: String,
    pub records_dir: PathBuf,
    pub extra: Value,
}

impl TestNet {
    pub fn new(tag: &str) -> TestNet {
        let (subnet, gateway) = next_subnet();
        let name = format!("sct-{tag}-{}", std::process::id());
        let records_dir = PathBuf::from(format!("/run/smarter-cni-test/records/{name}"));
        let _ = std::fs::remove_dir_all(&records_dir);
        TestNet { name, subnet, gateway, records_dir, extra: json!({}) }
    }

    /// The plugin entry as the runtime passes it on stdin.
    pub fn config(&self, cni_version: &str) -> Value {
        let mut conf = json!({
            "cniVersion": cni_version,
            "name": self.name,
            "type": "smarter-cni",
            "subnet": self.subnet,
            "gateway": self.gateway,
            "dockerHost": docker_host(),
            "dns": {
                "recordsDir": self.records_dir,
                "domainsFile": self.domains_file(),
                "pidFile": self.records_dir.with_extension("pid"),
            },
        });
        merge(&mut conf, &self.extra);
        conf
    }

    /// Node DNS's list of the names it answers itself (dnsmasq `servers-file=`).
    pub fn domains_file(&self) -> PathBuf {
        self.records_dir.with_extension("domains")
    }

    /// The claims in the domains file, e.g. `["default", "api-0.app"]`.
    pub fn claimed_domains(&self) -> Vec<String> {
        std::fs::read_to_string(self.domains_file())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| Some(l.strip_prefix("server=/")?.strip_suffix('/')?.to_string()))
            .collect()
    }

    pub fn record_path(&self, container_id: &str) -> PathBuf {
        self.records_dir.join(container_id)
    }

    pub fn records(&self) -> Vec<String> {
        match std::fs::read_dir(&self.records_dir) {
            Ok(entries) => entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Removes the Docker network (detaching what is left) and the records.
    pub async fn cleanup(&self) {
        let docker = docker();
        if let Ok(net) = docker.inspect_network(&self.name, None::<bollard::query_parameters::InspectNetworkOptions>).await {
            for id in net.containers.unwrap_or_default().into_keys() {
                let _ = docker
                    .disconnect_network(&self.name, bollard::models::NetworkDisconnectRequest { container: id, force: Some(true) })
                    .await;
            }
            let _ = docker.remove_network(&self.name).await;
        }
        let _ = std::fs::remove_dir_all(&self.records_dir);
        let _ = std::fs::remove_dir_all(self.records_dir.with_extension("staging"));
        for extension in ["domains", "domains.lock", "pid"] {
            let _ = std::fs::remove_file(self.records_dir.with_extension(extension));
        }
    }
}

fn merge(base: &mut Value, extra: &Value) {
    if let (Some(base), Some(extra)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            match base.get_mut(k) {
                Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                _ => {
                    base.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

/// The kubelet's DNS settings that cri-dockerd writes over the sandbox's resolv.conf.
pub fn kubelet_resolv_conf(namespace: &str, cluster_dns: &str) -> String {
    format!(
        "nameserver {cluster_dns}\nsearch {namespace}.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
    )
}

/// The hostname the kubelet gives a pod without `spec.hostname`: its name, cut to 63
/// characters and trimmed of trailing '-' and '.' (kubelet `truncatePodHostnameIfNeeded`).
pub fn kubelet_hostname(pod: &str) -> String {
    match pod.get(..63) {
        Some(cut) if pod.len() > 63 => cut.trim_end_matches(['-', '.']).to_string(),
        _ => pod.to_string(),
    }
}

/// cri-dockerd's built-in loopback network list, `{"cniVersion":"0.2.0","name":
/// "cni-loopback","plugins":[{"type":"loopback"}]}`, as libcni hands its one plugin the
/// configuration (list name and version injected, keys sorted by Go's encoder).
pub const CRI_DOCKERD_LOOPBACK_CONF: &str = r#"{"cniVersion":"0.2.0","name":"cni-loopback","type":"loopback"}"#;

/// A pod sandbox made as cri-dockerd makes one (core/sandbox_run.go): pause-like container,
/// NetworkMode none, the pod's hostname, cri-dockerd's labels; started; resolv.conf rewritten.
pub struct Sandbox {
    pub id: String,
    pub pod: String,
    pub namespace: String,
    pub hostname: String,
    pub pid: u32,
    pub resolv_conf_path: PathBuf,
}

impl Sandbox {
    pub async fn start(pod: &str, namespace: &str, hostname: &str, cluster_dns: &str) -> Sandbox {
        Self::start_with_ports(pod, namespace, hostname, cluster_dns, &[]).await
    }

    /// `start`, with the pod's hostPorts set on the sandbox as cri-dockerd sets them (see
    /// `HostPort` at the end of this file).
    pub async fn start_with_ports(pod: &str, namespace: &str, hostname: &str, cluster_dns: &str, ports: &[HostPort]) -> Sandbox {
        let docker = docker();
        let unique = format!("k8s_POD_{pod}_{namespace}_{}", std::process::id());
        let labels = HashMap::from([
            (SANDBOX_LABEL.0.to_string(), SANDBOX_LABEL.1.to_string()),
            ("io.kubernetes.pod.name".to_string(), pod.to_string()),
            ("io.kubernetes.pod.namespace".to_string(), namespace.to_string()),
            ("smarter-cni-test".to_string(), "1".to_string()),
        ]);
        let body = ContainerCreateBody {
            image: Some(TEST_IMAGE.to_string()),
            hostname: Some(hostname.to_string()),
            labels: Some(labels),
            exposed_ports: cri_dockerd_exposed_ports(ports),
            host_config: Some(HostConfig {
                network_mode: Some("none".to_string()),
                port_bindings: cri_dockerd_port_bindings(ports),
                ..Default::default()
            }),
            ..Default::default()
        };
        let _ = docker
            .remove_container(&unique, Some(RemoveContainerOptions { force: true, ..Default::default() }))
            .await;
        let created = docker
            .create_container(Some(CreateContainerOptions { name: Some(unique), ..Default::default() }), body)
            .await
            .expect("create sandbox container");
        docker.start_container(&created.id, None::<bollard::query_parameters::StartContainerOptions>).await.expect("start sandbox");
        let inspect = docker.inspect_container(&created.id, None::<InspectContainerOptions>).await.expect("inspect sandbox");
        let resolv_conf_path = PathBuf::from(inspect.resolv_conf_path.expect("ResolvConfPath"));
        // cri-dockerd overwrites the file in place (os.WriteFile), as we do here.
        std::fs::write(&resolv_conf_path, kubelet_resolv_conf(namespace, cluster_dns)).expect("rewrite resolv.conf");
        Sandbox {
            id: created.id,
            pod: pod.to_string(),
            namespace: namespace.to_string(),
            hostname: hostname.to_string(),
            pid: inspect.state.and_then(|s| s.pid).unwrap_or(0) as u32,
            resolv_conf_path,
        }
    }

    pub fn netns(&self) -> String {
        format!("/proc/{}/ns/net", self.pid)
    }

    pub fn cni_args(&self) -> String {
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={}",
            self.namespace, self.pod, self.id
        )
    }

    /// The environment cri-dockerd gives the plugin for this sandbox.
    pub fn env(&self, command: &str) -> Vec<(String, String)> {
        vec![
            ("CNI_COMMAND".into(), command.into()),
            ("CNI_CONTAINERID".into(), self.id.clone()),
            ("CNI_NETNS".into(), self.netns()),
            ("CNI_IFNAME".into(), "eth0".into()),
            ("CNI_ARGS".into(), self.cni_args()),
            ("CNI_PATH".into(), "/opt/cni/bin".into()),
        ]
    }

    /// cri-dockerd's loopback call for this sandbox: the same environment as the pod
    /// network's (`CNI_IFNAME=eth0` too), its built-in 0.2.0 configuration.
    pub async fn loopback(&self, command: &str) -> Outcome {
        let env = self.env(command);
        tokio::task::spawn_blocking(move || run_plugin_as(Some("loopback"), &env, CRI_DOCKERD_LOOPBACK_CONF.as_bytes()))
            .await
            .unwrap()
    }

    /// Runs a command inside the sandbox (same netns and resolv.conf as the pod's apps).
    pub async fn exec(&self, cmd: &[&str]) -> (i64, String) {
        exec_in(&self.id, cmd).await
    }

    pub async fn remove(&self) {
        let _ = docker()
            .remove_container(&self.id, Some(RemoveContainerOptions { force: true, ..Default::default() }))
            .await;
    }

    pub async fn endpoints(&self) -> HashMap<String, bollard::models::EndpointSettings> {
        docker()
            .inspect_container(&self.id, None::<InspectContainerOptions>)
            .await
            .ok()
            .and_then(|c| c.network_settings?.networks)
            .unwrap_or_default()
    }
}

pub async fn exec_in(container: &str, cmd: &[&str]) -> (i64, String) {
    let docker = docker();
    let exec = docker
        .create_exec(
            container,
            bollard::models::ExecConfig {
                cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("create exec");
    let mut text = String::new();
    if let bollard::exec::StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&exec.id, None).await.expect("start exec")
    {
        while let Some(Ok(chunk)) = output.next().await {
            text.push_str(&chunk.to_string());
        }
    }
    let code = docker.inspect_exec(&exec.id).await.ok().and_then(|e| e.exit_code).unwrap_or(-1);
    (code, text)
}

/// What one plugin process did.
#[derive(Debug)]
pub struct Outcome {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    pub fn ok(&self) -> &Self {
        assert_eq!(self.status, 0, "plugin failed: {self:?}");
        self
    }

    /// Asserts a spec error: non-zero exit, JSON on stdout with this code.
    pub fn error_code(&self) -> u64 {
        assert_ne!(self.status, 0, "expected failure: {self:?}");
        let doc = self.json();
        doc["code"].as_u64().unwrap_or_else(|| panic!("no numeric code: {self:?}"))
    }
}

/// The plugin binary under test: SMARTER_CNI_PLUGIN (e.g. a cross-built musl binary) or
/// the one cargo built; SMARTER_CNI_PLUGIN_WRAPPER runs it (e.g. qemu-aarch64-static).
pub fn plugin_command(argv0_name: Option<&str>) -> Command {
    let binary = std::env::var("SMARTER_CNI_PLUGIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_smarter-cni").to_string());
    let binary = match argv0_name {
        Some(name) => link_as(&binary, name),
        None => PathBuf::from(binary),
    };
    match std::env::var("SMARTER_CNI_PLUGIN_WRAPPER").ok().filter(|w| !w.is_empty()) {
        Some(wrapper) => {
            let mut cmd = Command::new(wrapper);
            cmd.arg(binary);
            cmd
        }
        None => Command::new(binary),
    }
}

/// A symlink named `name` to the plugin binary (how `loopback` is installed).
fn link_as(binary: &str, name: &str) -> PathBuf {
    let dir = PathBuf::from(format!("/run/smarter-cni-test/bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join(name);
    if !link.exists() {
        let _ = std::os::unix::fs::symlink(Path::new(binary), &link);
    }
    link
}

pub fn run_plugin(env: &[(String, String)], stdin: &[u8]) -> Outcome {
    run_plugin_as(None, env, stdin)
}

pub fn run_plugin_as(argv0_name: Option<&str>, env: &[(String, String)], stdin: &[u8]) -> Outcome {
    let mut cmd = plugin_command(argv0_name);
    cmd.env_clear();
    cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn plugin");
    {
        let mut input = child.stdin.take().unwrap();
        // A plugin may reject input before reading it all; a broken pipe is fine then.
        let _ = input.write_all(stdin);
    }
    let output = child.wait_with_output().expect("wait for plugin");
    Outcome {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// Runs the plugin off the async runtime's threads.
pub async fn plugin(env: Vec<(String, String)>, stdin: Vec<u8>) -> Outcome {
    tokio::task::spawn_blocking(move || run_plugin(&env, &stdin)).await.unwrap()
}

pub async fn add(net: &TestNet, sandbox: &Sandbox, version: &str) -> Outcome {
    plugin(sandbox.env("ADD"), net.config(version).to_string().into_bytes()).await
}

pub async fn del(net: &TestNet, sandbox: &Sandbox, version: &str) -> Outcome {
    plugin(sandbox.env("DEL"), net.config(version).to_string().into_bytes()).await
}

/// Polls `probe` until it returns true or `limit` passes (a generous bound, not a speed check).
pub async fn eventually<F, Fut>(limit: Duration, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if probe().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The IPv4 address (without prefix) of an ADD result in any spec version.
pub fn result_ip(doc: &Value) -> String {
    let cidr = doc["ips"][0]["address"].as_str().or_else(|| doc["ip4"]["ip"].as_str()).expect("result has an address");
    cidr.split('/').next().unwrap().to_string()
}

// --- Node DNS as shipped: its configuration, an uplink that is down, a node process ------

/// The shipped dnsmasq configuration, edited the way an operator edits it for another
/// subnet (listen address, records folder, pod domains, pid file) and other upstream
/// servers: `upstream_port` on 127.0.0.1, or none at all.
pub fn shipped_node_dns_config(net: &TestNet, upstream_port: Option<u16>) -> String {
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/images/rootfs/etc/smarter-cni/dnsmasq.conf")).unwrap();
    let mut edited = shipped
        .replace("listen-address=172.38.0.1", &format!("listen-address={}", net.gateway))
        .replace("hostsdir=/run/smarter-cni/mynet/hosts", &format!("hostsdir={}", net.records_dir.display()))
        .replace("servers-file=/run/smarter-cni/mynet/domains", &format!("servers-file={}", net.domains_file().display()))
        .replace("pid-file=/run/smarter-cni/mynet/dnsmasq.pid", &format!("pid-file={}", net.records_dir.with_extension("pid").display()));
    for setting in ["listen-address=", "hostsdir=", "servers-file=", "pid-file="] {
        assert!(!edited.contains(&format!("{setting}/run/smarter-cni/mynet")) && !edited.contains("=172.38.0.1"), "{setting} edited");
    }
    edited.push_str("no-resolv\n");
    if let Some(port) = upstream_port {
        edited.push_str(&format!("server=127.0.0.1#{port}\n"));
    }
    edited
}

/// Stands in for an uplink that is down: a UDP socket on loopback that never answers and
/// keeps the name of every query that reaches it.
pub struct BlackHole {
    pub port: u16,
    received: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BlackHole {
    pub fn start() -> BlackHole {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let port = socket.local_addr().unwrap().port();
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (log, done) = (received.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok((len, _)) = socket.recv_from(&mut buf) {
                    log.lock().unwrap().push(query_name(&buf[..len]));
                }
            }
        });
        BlackHole { port, received, stop, thread: Some(thread) }
    }

    pub fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The question name of a DNS query, lower-cased (dnsmasq may randomise case).
fn query_name(packet: &[u8]) -> String {
    let mut labels = Vec::new();
    let mut at = 12;
    while let Some(&len) = packet.get(at) {
        if len == 0 || at + 1 + len as usize > packet.len() {
            break;
        }
        labels.push(String::from_utf8_lossy(&packet[at + 1..at + 1 + len as usize]).to_ascii_lowercase());
        at += 1 + len as usize;
    }
    labels.join(".")
}

/// `getent ahosts` (glibc: A and AAAA in parallel) as a node process whose resolv.conf
/// names node DNS: run in a private mount namespace with that file bound over
/// /etc/resolv.conf, so the machine's own file is never touched.
pub fn node_process_getent(resolv_conf: &Path, name: &str) -> (bool, String) {
    let script = format!("mount --bind {} /etc/resolv.conf && exec getent ahosts {name}", resolv_conf.display());
    let out = Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &script]).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}


// ---------------------------------------------------------------------------------------
// hostPort (tests/hostport.rs): sandboxes with the pod's hostPorts, shaped as cri-dockerd
// shapes them.
// ---------------------------------------------------------------------------------------

/// One `ports[]` entry of a pod spec that sets `hostPort` (no `hostIP`, as most pods).
#[derive(Debug, Clone, Copy)]
pub struct HostPort {
    pub host_port: u16,
    pub container_port: u16,
    /// "tcp" or "udp".
    pub protocol: &'static str,
}

/// `Config.ExposedPorts` as cri-dockerd's `libdocker.MakePortsAndBindings` sets it:
/// `{"<containerPort>/<protocol>": {}}`. `None` without ports, as for a pod without them.
fn cri_dockerd_exposed_ports(ports: &[HostPort]) -> Option<Vec<String>> {
    let keys: Vec<String> = ports.iter().map(|p| format!("{}/{}", p.container_port, p.protocol)).collect();
    (!keys.is_empty()).then_some(keys)
}

/// `HostConfig.PortBindings` as `MakePortsAndBindings` sets them:
/// `{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}` (HostIp is the pod's hostIP, empty when
/// unset; the port is a string; several host ports of one container port are appended).
fn cri_dockerd_port_bindings(ports: &[HostPort]) -> Option<bollard::models::PortMap> {
    let mut map = bollard::models::PortMap::new();
    for p in ports {
        let binding = bollard::models::PortBinding { host_ip: Some(String::new()), host_port: Some(p.host_port.to_string()) };
        map.entry(format!("{}/{}", p.container_port, p.protocol)).or_insert_with(|| Some(Vec::new())).get_or_insert_with(Vec::new).push(binding);
    }
    (!map.is_empty()).then_some(map)
}

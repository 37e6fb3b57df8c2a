//! Test harness for a real containerd (scripts/containerd.sh): its CRI socket, CNI conf and
//! bin dirs from the environment, pods made through the CRI as the kubelet makes them, and
//! checks that a removed pod left nothing on the host.
//!
//! Environment (printed by `scripts/containerd.sh env 1.7|2.1`):
//! SMARTER_CNI_TEST_CONTAINERD (the CRI socket), SMARTER_CNI_TEST_CONTAINERD_CONF_DIR,
//! SMARTER_CNI_TEST_CONTAINERD_BIN_DIR, SMARTER_CNI_TEST_CONTAINERD_IMAGE; optional
//! SMARTER_CNI_TEST_CONTAINERD_SUBNET (a /24; default 172.39.<major><minor>.0/24).
#![allow(dead_code)]

pub mod api;
pub mod client;
pub mod pod_network;

pub use api::*;
pub use client::{CriClient, CriError};
pub use pod_network::*;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// The cluster DNS address the kubelet would put in every pod's resolv.conf.
pub const CLUSTER_DNS: &str = "10.43.0.10";
/// The interface containerd asks the pod network for.
pub const POD_IFNAME: &str = "eth0";
/// The pods' cgroups go below this (cgroupfs driver), as the kubelet's go below /kubepods.
const CGROUP_ROOT: &str = "smarter-cni-test";

/// One containerd under test, and the pod network this test binary gave it.
pub struct TestCtx {
    pub socket: String,
    pub conf_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub image: String,
    /// containerd's version, e.g. "1.7.24~ds1" or "2.1.9+unknown".
    pub runtime_version: String,
    /// "17" or "21": names this daemon's network, bridge, subnet and folders.
    pub tag: String,
    pub network: String,
    pub bridge: String,
    pub subnet: String,
    pub gateway: String,
    /// This binary's folder: pod logs, host-local store, recorded CNI calls.
    pub work_dir: PathBuf,
}

fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: these tests need a real containerd. Run `scripts/containerd.sh start`, \
             then e.g. `set -a; eval \"$(scripts/containerd.sh env 2.1)\"; set +a` before `cargo test --test containerd`"
        ),
    }
}

static CTX: OnceCell<TestCtx> = OnceCell::const_new();

impl TestCtx {
    /// The daemon from the environment, its pod network installed and loaded (once per
    /// test binary: containerd has one pod network, shared by all tests of the binary).
    pub async fn get() -> &'static TestCtx {
        CTX.get_or_init(TestCtx::setup).await
    }

    async fn setup() -> TestCtx {
        let socket = env("SMARTER_CNI_TEST_CONTAINERD");
        let conf_dir = PathBuf::from(env("SMARTER_CNI_TEST_CONTAINERD_CONF_DIR"));
        let bin_dir = PathBuf::from(env("SMARTER_CNI_TEST_CONTAINERD_BIN_DIR"));
        let image = env("SMARTER_CNI_TEST_CONTAINERD_IMAGE");
        let cri = CriClient::connect(&socket).await.unwrap_or_else(|e| panic!("{e}"));
        let v = cri.version().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.runtime_name, "containerd", "{socket} is not containerd: {v:?}");
        let mut parts = v.runtime_version.split(['.', '~', '+', '-']);
        let tag = format!("{}{}", parts.next().unwrap_or("0"), parts.next().unwrap_or("0"));
        assert!(tag.len() == 2 && tag.bytes().all(|b| b.is_ascii_digit()), "unexpected containerd version {:?}", v.runtime_version);
        let subnet = std::env::var("SMARTER_CNI_TEST_CONTAINERD_SUBNET").unwrap_or_else(|_| format!("172.39.{tag}.0/24"));
        let prefix = subnet.strip_suffix(".0/24").expect("SMARTER_CNI_TEST_CONTAINERD_SUBNET must be an a.b.c.0/24");
        let ctx = TestCtx {
            socket,
            conf_dir,
            bin_dir,
            image,
            runtime_version: v.runtime_version,
            network: format!("sct-cri{tag}"),
            bridge: format!("sct-cri{tag}"),
            gateway: format!("{prefix}.1"),
            subnet,
            work_dir: PathBuf::from(format!("/run/smarter-cni-test/cri-{tag}")),
            tag,
        };
        ctx.install_pod_network(&cri).await;
        ctx
    }

    /// Writes the plugins (each behind a wrapper that records the call) and the conflist,
    /// and waits until containerd has loaded exactly this conflist and reports NetworkReady.
    async fn install_pod_network(&self, cri: &CriClient) {
        pod_network_prepare(self);
        let _ = std::fs::remove_dir_all(self.calls_dir());
        std::fs::create_dir_all(self.calls_dir()).unwrap();
        std::fs::create_dir_all(&self.bin_dir).unwrap();
        for (name, real) in pod_network_plugins() {
            assert!(real.exists(), "{} missing: run scripts/deps.sh", real.display());
            let script = format!(
                "#!/bin/sh\n# Test wrapper: records what the runtime sent to {name}, then runs it.\n\
                 f=\"{calls}/$(date +%s%N)-$$-{name}\"\n\
                 env -0 >\"$f.env\"\ncat >\"$f.stdin\"\n\
                 \"{real}\" <\"$f.stdin\" >\"$f.stdout\"\nrc=$?\necho $rc >\"$f.rc\"\ncat \"$f.stdout\"\nexit $rc\n",
                calls = self.calls_dir().display(),
                real = real.display(),
            );
            write_atomic(&self.bin_dir.join(name), script.as_bytes(), 0o755);
        }
        std::fs::create_dir_all(&self.conf_dir).unwrap();
        let file = format!("10-{}.conflist", self.network);
        for entry in std::fs::read_dir(&self.conf_dir).unwrap().flatten() {
            if entry.file_name() != file.as_str() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let conflist = pod_network_conflist(self);
        let path = self.conf_dir.join(&file);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(conflist.as_str()) {
            write_atomic(&path, conflist.as_bytes(), 0o644);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st = cri.status(true).await.unwrap_or_else(|e| panic!("{e}"));
            let ready = st.status.unwrap_or_default().conditions.iter().any(|c| c.r#type == "NetworkReady" && c.status);
            let loaded = st.info.get("cniconfig").is_some_and(|c| loaded_conflists(c).contains(&conflist));
            if ready && loaded {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "containerd at {} did not load {} within 30 s (ready {ready}); its cniconfig: {:?}",
                self.socket,
                path.display(),
                st.info.get("cniconfig")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Where the plugin wrappers record each call (`<time>-<pid>-<plugin>.{env,stdin,stdout,rc}`).
    pub fn calls_dir(&self) -> PathBuf {
        self.work_dir.join("cni-calls")
    }

    pub async fn client(&self) -> CriClient {
        CriClient::connect(&self.socket).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// The CNI calls containerd made for one sandbox, in order.
    pub fn cni_calls(&self, sandbox_id: &str) -> Vec<CniCall> {
        self.all_cni_calls().into_iter().filter(|c| c.env.get("CNI_CONTAINERID").map(String::as_str) == Some(sandbox_id)).collect()
    }

    /// Every CNI call containerd made since this binary installed the pod network, in order.
    pub fn all_cni_calls(&self) -> Vec<CniCall> {
        let mut calls = Vec::new();
        for entry in std::fs::read_dir(self.calls_dir()).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".env") else { continue };
            let base = self.calls_dir().join(stem);
            let env: HashMap<String, String> = std::fs::read(base.with_extension("env"))
                .unwrap_or_default()
                .split(|b| *b == 0)
                .filter_map(|kv| {
                    let kv = String::from_utf8_lossy(kv);
                    let (k, v) = kv.split_once('=')?;
                    k.starts_with("CNI_").then(|| (k.to_string(), v.to_string()))
                })
                .collect();
            let read = |ext: &str| std::fs::read_to_string(self.calls_dir().join(format!("{stem}.{ext}"))).unwrap_or_default();
            calls.push(CniCall {
                key: stem.to_string(),
                plugin: stem.splitn(3, '-').nth(2).unwrap_or("").to_string(),
                stdin: read("stdin"),
                stdout: read("stdout"),
                rc: read("rc").trim().parse().ok(),
                env,
            });
        }
        calls.sort_by(|a, b| a.key.cmp(&b.key));
        calls
    }
}

/// The `Source` of each network containerd loaded, from its verbose Status "cniconfig".
fn loaded_conflists(cniconfig: &str) -> Vec<String> {
    let doc: serde_json::Value = serde_json::from_str(cniconfig).unwrap_or_default();
    doc["Networks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["Config"]["Source"].as_str().map(str::to_string))
        .collect()
}

fn write_atomic(path: &Path, content: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, content).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// One plugin run as the wrapper recorded it.
#[derive(Debug)]
pub struct CniCall {
    key: String,
    pub plugin: String,
    /// CNI_* variables only.
    pub env: HashMap<String, String>,
    pub stdin: String,
    pub stdout: String,
    pub rc: Option<i32>,
}

impl CniCall {
    pub fn command(&self) -> &str {
        self.env.get("CNI_COMMAND").map(String::as_str).unwrap_or("")
    }
}

/// What a test wants of a pod; `PodSpec::new` gives the kubelet's defaults.
#[derive(Clone, Debug)]
pub struct PodSpec {
    pub name: String,
    pub namespace: String,
    pub hostname: String,
    pub dns: DnsConfig,
    pub labels: HashMap<String, String>,
    pub port_mappings: Vec<PortMapping>,
    /// The app container's command; empty = the image's (/pause). None = no app container.
    pub command: Option<Vec<String>>,
}

impl PodSpec {
    /// A pod named `<test>-<pid>-<n>` in namespace `cri-test` (unique across tests and runs).
    pub fn new(test: &str) -> PodSpec {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("{test}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let namespace = "cri-test".to_string();
        PodSpec {
            hostname: name.clone(),
            dns: DnsConfig {
                servers: vec![CLUSTER_DNS.into()],
                searches: vec![format!("{namespace}.svc.cluster.local"), "svc.cluster.local".into(), "cluster.local".into()],
                options: vec!["ndots:5".into()],
            },
            name,
            namespace,
            labels: HashMap::new(),
            port_mappings: Vec::new(),
            command: Some(Vec::new()),
        }
    }
}

/// A pod made through the CRI. Dropping it removes it (also when the test panics).
pub struct Pod {
    pub id: String,
    pub spec: PodSpec,
    pub uid: String,
    pub config: PodSandboxConfig,
    /// The app container, if any.
    pub container: Option<String>,
    /// The sandbox's network namespace (a bind mount containerd made).
    pub netns: String,
    /// The pod's address (PodSandboxStatus).
    pub ip: String,
    /// Name of the host end of the pod's veth pair, if the pod network made one.
    pub host_veth: Option<String>,
    socket: String,
    tag: String,
    removed: bool,
}

fn uid_for(name: &str) -> String {
    // Unique enough: pod names are unique per test binary run; mix in the time for reruns.
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.bytes().chain(t.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    let s = format!("{h:016x}{:016x}", h.rotate_left(29) ^ t as u64);
    format!("{}-{}-{}-{}-{}", &s[0..8], &s[8..12], &s[12..16], &s[16..20], &s[20..32])
}

/// The kubelet's default masked and read-only paths (`securitycontext` package).
const MASKED_PATHS: &[&str] = &[
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

fn pod_namespaces() -> NamespaceOption {
    NamespaceOption { network: NAMESPACE_POD, pid: NAMESPACE_CONTAINER, ipc: NAMESPACE_POD }
}

fn unconfined() -> Option<SecurityProfile> {
    Some(SecurityProfile { profile_type: PROFILE_UNCONFINED, localhost_ref: String::new() })
}

impl Pod {
    /// The sandbox config the kubelet sends for this pod (`generatePodSandboxConfig`).
    fn sandbox_config(ctx: &TestCtx, spec: &PodSpec, uid: &str) -> PodSandboxConfig {
        let mut labels = spec.labels.clone();
        labels.insert("io.kubernetes.pod.name".into(), spec.name.clone());
        labels.insert("io.kubernetes.pod.namespace".into(), spec.namespace.clone());
        labels.insert("io.kubernetes.pod.uid".into(), uid.into());
        labels.insert("smarter-cni-test".into(), std::process::id().to_string());
        let annotations = HashMap::from([
            ("kubernetes.io/config.source".to_string(), "api".to_string()),
            ("kubernetes.io/config.seen".to_string(), "2025-01-01T00:00:00.000000000Z".to_string()),
        ]);
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata { name: spec.name.clone(), uid: uid.into(), namespace: spec.namespace.clone(), attempt: 0 }),
            hostname: spec.hostname.clone(),
            log_directory: ctx.work_dir.join("pods").join(format!("{}_{}_{uid}", spec.namespace, spec.name)).display().to_string(),
            dns_config: Some(spec.dns.clone()),
            port_mappings: spec.port_mappings.clone(),
            labels,
            annotations,
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("/{CGROUP_ROOT}/cri-{}/pod{uid}", ctx.tag),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(pod_namespaces()),
                    readonly_rootfs: false,
                    privileged: false,
                    seccomp: unconfined(),
                }),
                sysctls: HashMap::new(),
            }),
        }
    }

    /// The app container's config as the kubelet sends it (`generateContainerConfig`).
    fn container_config(ctx: &TestCtx, spec: &PodSpec, uid: &str, command: &[String]) -> ContainerConfig {
        let labels = HashMap::from([
            ("io.kubernetes.container.name".to_string(), "app".to_string()),
            ("io.kubernetes.pod.name".to_string(), spec.name.clone()),
            ("io.kubernetes.pod.namespace".to_string(), spec.namespace.clone()),
            ("io.kubernetes.pod.uid".to_string(), uid.to_string()),
        ]);
        let annotations = HashMap::from([
            ("io.kubernetes.container.restartCount".to_string(), "0".to_string()),
            ("io.kubernetes.container.terminationMessagePath".to_string(), "/dev/termination-log".to_string()),
        ]);
        ContainerConfig {
            metadata: Some(ContainerMetadata { name: "app".into(), attempt: 0 }),
            image: Some(ImageSpec { image: ctx.image.clone(), user_specified_image: ctx.image.clone() }),
            command: command.to_vec(),
            args: Vec::new(),
            working_dir: String::new(),
            envs: vec![KeyValue { key: "POD_NAME".into(), value: spec.name.clone() }],
            labels,
            annotations,
            log_path: "app/0.log".into(),
            linux: Some(LinuxContainerConfig {
                // BestEffort QoS.
                resources: Some(LinuxContainerResources { cpu_period: 100_000, cpu_shares: 2, oom_score_adj: 1000, ..Default::default() }),
                security_context: Some(LinuxContainerSecurityContext {
                    privileged: false,
                    namespace_options: Some(pod_namespaces()),
                    masked_paths: MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
                    readonly_paths: READONLY_PATHS.iter().map(|s| s.to_string()).collect(),
                    seccomp: unconfined(),
                }),
            }),
        }
    }

    /// RunPodSandbox, then (unless `spec.command` is None) CreateContainer + StartContainer.
    pub async fn start(ctx: &TestCtx, cri: &CriClient, spec: PodSpec) -> Result<Pod, CriError> {
        let uid = uid_for(&spec.name);
        let config = Pod::sandbox_config(ctx, &spec, &uid);
        std::fs::create_dir_all(&config.log_directory).unwrap();
        let id = match cri.run_pod_sandbox(&config).await {
            Ok(id) => id,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&config.log_directory);
                remove_pod_cgroup(&config);
                return Err(e);
            }
        };
        let mut pod = Pod {
            id,
            uid: uid.clone(),
            config,
            container: None,
            netns: String::new(),
            ip: String::new(),
            host_veth: None,
            socket: ctx.socket.clone(),
            tag: ctx.tag.clone(),
            removed: false,
            spec,
        };
        // From here on Drop cleans up whatever fails.
        let st = cri.pod_sandbox_status(&pod.id, true).await?;
        let status = st.status.unwrap_or_default();
        assert_eq!(status.state, SANDBOX_READY, "sandbox {} not ready", pod.id);
        pod.ip = status.network.unwrap_or_default().ip;
        pod.netns = netns_from_info(st.info.get("info").map(String::as_str).unwrap_or(""))
            .unwrap_or_else(|| panic!("no network namespace in the verbose status of {}", pod.id));
        pod.host_veth = host_veth(&pod.netns, POD_IFNAME);
        if let Some(command) = pod.spec.command.clone() {
            let cc = Pod::container_config(ctx, &pod.spec, &uid, &command);
            let cid = cri.create_container(&pod.id, &cc, &pod.config).await?;
            pod.container = Some(cid.clone());
            cri.start_container(&cid).await?;
        }
        Ok(pod)
    }

    /// ExecSync in the app container.
    pub async fn exec(&self, cri: &CriClient, cmd: &[&str]) -> ExecSyncResponse {
        let cid = self.container.as_deref().expect("pod has no app container");
        cri.exec_sync(cid, cmd, 20).await.unwrap_or_else(|e| panic!("exec {cmd:?} in {}: {e}", self.spec.name))
    }

    /// ExecSync that must exit 0; its stdout.
    pub async fn exec_ok(&self, cri: &CriClient, cmd: &[&str]) -> String {
        let r = self.exec(cri, cmd).await;
        assert_eq!(
            r.exit_code,
            0,
            "{cmd:?} in {}: exit {}, stdout {:?}, stderr {:?}",
            self.spec.name,
            r.exit_code,
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        );
        String::from_utf8_lossy(&r.stdout).into_owned()
    }

    /// What the kubelet does when a pod is deleted: StopContainer, StopPodSandbox, then (its
    /// GC) RemoveContainer, RemovePodSandbox; the kubelet also removes the pod cgroup.
    pub async fn stop_remove(&mut self, cri: &CriClient) -> Result<(), CriError> {
        self.stop(cri).await?;
        self.remove(cri).await
    }

    pub async fn stop(&mut self, cri: &CriClient) -> Result<(), CriError> {
        if let Some(cid) = &self.container {
            cri.stop_container(cid, 5).await?;
        }
        cri.stop_pod_sandbox(&self.id).await
    }

    pub async fn remove(&mut self, cri: &CriClient) -> Result<(), CriError> {
        if let Some(cid) = &self.container {
            cri.remove_container(cid).await?;
        }
        cri.remove_pod_sandbox(&self.id).await?;
        self.removed = true;
        let _ = std::fs::remove_dir_all(&self.config.log_directory);
        remove_pod_cgroup(&self.config);
        Ok(())
    }

    /// What is left of this pod on the host; empty after `stop_remove`.
    pub async fn leftovers(&self, ctx: &TestCtx, cri: &CriClient) -> Vec<String> {
        let mut left = Vec::new();
        if Path::new(&self.netns).exists() {
            left.push(format!("netns {}", self.netns));
        }
        if let Some(veth) = &self.host_veth {
            if Path::new("/sys/class/net").join(veth).exists() {
                left.push(format!("host veth {veth}"));
            }
        }
        let filter = PodSandboxFilter { id: self.id.clone(), ..Default::default() };
        if !cri.list_pod_sandbox(Some(filter)).await.unwrap_or_else(|e| panic!("{e}")).is_empty() {
            left.push(format!("sandbox {} still listed", self.id));
        }
        // libcni's result cache: <network>-<container id>-<ifname>.
        for entry in std::fs::read_dir("/var/lib/cni/results").into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().contains(&self.id) {
                left.push(format!("libcni cache {}", entry.path().display()));
            }
        }
        for dir in pod_cgroup_dirs(&self.config) {
            if dir.exists() {
                left.push(format!("cgroup {}", dir.display()));
            }
        }
        left.extend(pod_network_leftovers(ctx, &self.id));
        left
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        // Own thread and runtime: Drop may run inside (or outside) a runtime, or in a panic.
        let (socket, id, cid, config) = (self.socket.clone(), self.id.clone(), self.container.clone(), self.config.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(cri) = CriClient::connect(&socket).await {
                    if let Some(cid) = &cid {
                        let _ = cri.stop_container(cid, 0).await;
                        let _ = cri.remove_container(cid).await;
                    }
                    let _ = cri.stop_pod_sandbox(&id).await;
                    if let Err(e) = cri.remove_pod_sandbox(&id).await {
                        eprintln!("cleanup: RemovePodSandbox {id}: {e}");
                    }
                }
            });
            let _ = std::fs::remove_dir_all(&config.log_directory);
            remove_pod_cgroup(&config);
        })
        .join();
    }
}

/// The network namespace path in containerd's verbose sandbox info (runtimeSpec).
fn netns_from_info(info: &str) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_str(info).ok()?;
    doc["runtimeSpec"]["linux"]["namespaces"]
        .as_array()?
        .iter()
        .find(|n| n["type"] == "network")
        .and_then(|n| n["path"].as_str())
        .map(str::to_string)
}

/// The host end of the veth whose other end is `ifname` in `netns` (`eth0@ifN` → link N).
fn host_veth(netns: &str, ifname: &str) -> Option<String> {
    let out = Command::new("nsenter").arg(format!("--net={netns}")).args(["ip", "-o", "link", "show", ifname]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let peer: u32 = text.split_once("@if")?.1.split(':').next()?.parse().ok()?;
    for entry in std::fs::read_dir("/sys/class/net").ok()?.flatten() {
        let index = std::fs::read_to_string(entry.path().join("ifindex")).unwrap_or_default();
        if index.trim().parse() == Ok(peer) {
            return Some(entry.file_name().to_string_lossy().into_owned());
        }
    }
    None
}

/// The pod cgroup in every mounted hierarchy (v1 controllers, or the one v2 tree).
fn pod_cgroup_dirs(config: &PodSandboxConfig) -> Vec<PathBuf> {
    let parent = config.linux.as_ref().map(|l| l.cgroup_parent.trim_start_matches('/').to_string()).unwrap_or_default();
    if parent.is_empty() {
        return Vec::new();
    }
    let mut dirs = Vec::new();
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        dirs.push(Path::new("/sys/fs/cgroup").join(&parent));
    } else {
        for entry in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            dirs.push(entry.path().join(&parent));
        }
    }
    dirs
}

/// rmdir of the (empty) pod cgroup, as the kubelet does once the pod's containers are gone.
fn remove_pod_cgroup(config: &PodSandboxConfig) {
    for dir in pod_cgroup_dirs(config) {
        let _ = std::fs::remove_dir(dir);
    }
}

/// Polls `probe` every 50 ms until true or `limit` passes.
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
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

//! hostPort in Docker mode. cri-dockerd sets a pod's hostPorts as the sandbox's PortBindings
//! (NetworkMode none) and Docker publishes them when the plugin connects the sandbox. Proven
//! here from a "LAN host" (its own network namespace, joined to the node by a veth pair),
//! from the node and from another pod, over TCP and UDP; a held port is a clear error that
//! leaves nothing behind; `status` lists each pod's ports.

mod common;

use common::*;
use serde_json::json;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const CLUSTER_DNS: &str = "10.43.0.10";
const NAMESPACE: &str = "iot";
const GENEROUS: Duration = Duration::from_secs(10);
/// The name the pod's DNS server answers with the pod's own address.
const ASK: &str = "whoami.hostport.test";

/// The second number of SMARTER_CNI_TEST_SUBNET_BASE ("172.30" -> 30): the suites of the two
/// engines share this host's ports and addresses, so each takes its share by its base.
fn base_number() -> u8 {
    let base = std::env::var("SMARTER_CNI_TEST_SUBNET_BASE").unwrap_or_else(|_| "172.30".to_string());
    base.split('.').nth(1).and_then(|n| n.parse().ok()).expect("SMARTER_CNI_TEST_SUBNET_BASE like 172.30")
}

/// Host ports of this suite: 20 per base in 18000-18639, nobody else's (tests/node.rs uses
/// 20000+). The bases of scripts/test.sh, 172.30 and 172.31, get 18600-18639.
fn host_port(k: u16) -> u16 {
    assert!(k < 20);
    18000 + u16::from(base_number() % 32) * 20 + k
}

fn tcp(host_port: u16, container_port: u16) -> HostPort {
    HostPort { host_port, container_port, protocol: "tcp" }
}

fn udp(host_port: u16, container_port: u16) -> HostPort {
    HostPort { host_port, container_port, protocol: "udp" }
}

fn ip(args: &[&str]) -> std::process::Output {
    Command::new("ip").args(args).output().expect("ip from iproute2")
}

fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A host on the gateway's LAN: a network namespace joined to the node by a veth pair, in a
/// /30 of TEST-NET-2 (198.51.100.0/24; this machine's own uplink is on TEST-NET-1). The node
/// end's address plays the gateway's LAN address. Only these two addresses are ever used.
struct LanHost {
    netns: String,
    node_end: String,
    node_address: Ipv4Addr,
}

impl LanHost {
    /// `k` < 4: four /30s per engine base, 64 in all.
    fn new(k: u8) -> LanHost {
        assert!(k < 4);
        let n = base_number();
        let first = ((n % 16) * 4 + k) * 4;
        let netns = format!("sct-lan-{n}-{k}");
        let node_end = format!("sctl{n}h{k}");
        // Fixed names: what a killed run left is found and replaced.
        let _ = ip(&["netns", "del", &netns]);
        let _ = ip(&["link", "del", &node_end]);
        let lan = LanHost { netns, node_end, node_address: Ipv4Addr::new(198, 51, 100, first + 1) };
        let host_address = Ipv4Addr::new(198, 51, 100, first + 2);
        ip_ok(&["netns", "add", &lan.netns]);
        ip_ok(&["link", "add", &lan.node_end, "type", "veth", "peer", "name", "eth0", "netns", &lan.netns]);
        ip_ok(&["addr", "add", &format!("{}/30", lan.node_address), "dev", &lan.node_end]);
        ip_ok(&["link", "set", &lan.node_end, "up"]);
        ip_ok(&["-n", &lan.netns, "addr", "add", &format!("{host_address}/30"), "dev", "eth0"]);
        ip_ok(&["-n", &lan.netns, "link", "set", "eth0", "up"]);
        lan
    }

    fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.netns))
    }
}

impl Drop for LanHost {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the node's.
        let _ = ip(&["netns", "del", &self.netns]);
        let _ = ip(&["link", "del", &self.node_end]);
    }
}

/// What one test makes on the engine and the node (network, sandboxes, LAN host, files),
/// removed when it is dropped, whether the test passes or panics.
struct World {
    net: TestNet,
    lan: Option<LanHost>,
    sandboxes: std::sync::Mutex<Vec<String>>,
    dir: PathBuf,
}

impl World {
    fn new(tag: &str) -> World {
        let dir = PathBuf::from(format!("/run/smarter-cni-test/node-{tag}-{}", std::process::id()));
        World { net: TestNet::new(tag), lan: None, sandboxes: Default::default(), dir }
    }

    fn with_lan(tag: &str, k: u8) -> World {
        let mut world = World::new(tag);
        world.lan = Some(LanHost::new(k));
        world
    }

    fn lan(&self) -> &LanHost {
        self.lan.as_ref().expect("a world with a LAN host")
    }

    async fn pod(&self, pod: &str, hostname: &str, ports: &[HostPort]) -> Sandbox {
        let sandbox = Sandbox::start_with_ports(pod, NAMESPACE, hostname, CLUSTER_DNS, ports).await;
        self.sandboxes.lock().unwrap().push(sandbox.id.clone());
        sandbox
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Drop runs on the test's runtime, which cannot block on a future: a thread of its own.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async {
                    let docker = docker();
                    for id in self.sandboxes.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                        let options = bollard::query_parameters::RemoveContainerOptions { force: true, ..Default::default() };
                        let _ = docker.remove_container(id, Some(options)).await;
                    }
                    self.net.cleanup().await;
                });
            });
        });
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The pod's servers: `hello from <pod>` on 80/tcp, and DNS on 53/udp answering ASK with the
/// pod's address (so an answer says which pod it came from).
async fn serve(pod: &Sandbox, address: &str) {
    let hello = format!("nc -ll -p 80 -e echo hello from {} </dev/null >/dev/null 2>&1 &", pod.pod);
    let (code, out) = pod.exec(&["sh", "-c", &hello]).await;
    assert_eq!(code, 0, "{out}");
    let answer = format!("--address=/{ASK}/{address}");
    let (code, out) = pod.exec(&["dnsmasq", "--port=53", "--no-resolv", "--no-hosts", "--user=root", &answer, "--pid-file=/tmp/dns.pid"]).await;
    assert_eq!(code, 0, "{out}");
}

/// Runs `probe` on a new thread in the network namespace at `netns` (`None`: the node's).
/// Only that thread moves: the test's other threads stay on the node.
async fn from<T: Send + 'static>(netns: Option<PathBuf>, probe: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || {
            if let Some(netns) = netns {
                smarter_cni::netns::enter(&netns).expect("enter the network namespace");
            }
            probe()
        })
        .join()
        .unwrap()
    })
    .await
    .unwrap()
}

/// What the TCP server says, or why there was nothing to read.
fn tcp_hello(to: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text.trim().to_string())
}

/// One DNS question for ASK to `to`, from an unconnected socket so that a reply from another
/// address is received and told apart rather than dropped by the kernel. Gives who replied
/// and the address in the answer.
fn udp_ask(to: SocketAddr) -> std::io::Result<(SocketAddr, Option<Ipv4Addr>)> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut query = vec![0x68, 0x70, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ASK.split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    socket.send_to(&query, to)?;
    let mut reply = [0u8; 512];
    let (len, replier) = socket.recv_from(&mut reply)?;
    // One A answer after the echoed question: name pointer, type, class, TTL, length, address.
    let one_answer = len == query.len() + 16 && reply[..2] == query[..2] && reply[3] & 0x0f == 0 && reply[6..8] == [0, 1];
    Ok((replier, one_answer.then(|| Ipv4Addr::new(reply[len - 4], reply[len - 3], reply[len - 2], reply[len - 1]))))
}

fn at(address: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(address, port))
}

/// Docker's traces of a published port on the node: DNAT rules and docker-proxy processes.
fn docker_traces(port: u16) -> Vec<String> {
    let rules = Command::new("iptables").args(["-w", "-t", "nat", "-S", "DOCKER"]).output().expect("iptables");
    let proxies = Command::new("pgrep").args(["-a", "docker-proxy"]).output().expect("pgrep");
    let dport = format!("--dport {port} ");
    let host_port = format!("-host-port {port} ");
    let mut traces: Vec<String> =
        String::from_utf8_lossy(&rules.stdout).lines().filter(|l| l.contains(&dport) && l.contains("DNAT")).map(String::from).collect();
    traces.extend(String::from_utf8_lossy(&proxies.stdout).lines().filter(|l| format!("{l} ").contains(&host_port)).map(String::from));
    traces
}

/// `<host port>-><container port>/<protocol>` for each port Docker publishes for the container.
fn published(inspect: &bollard::models::ContainerInspectResponse) -> Vec<String> {
    let mut ports: Vec<String> = inspect
        .network_settings
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default()
        .into_iter()
        .flat_map(|(key, bindings)| bindings.unwrap_or_default().into_iter().map(move |b| format!("{}->{key}", b.host_port.unwrap_or_default())))
        .collect();
    ports.sort();
    ports.dedup();
    ports
}

async fn inspect(sandbox: &Sandbox) -> bollard::models::ContainerInspectResponse {
    docker().inspect_container(&sandbox.id, None::<bollard::query_parameters::InspectContainerOptions>).await.expect("inspect sandbox")
}

/// The sandbox is exactly as cri-dockerd left it: only on `none`, no eth0, nothing published.
async fn untouched(sandbox: &Sandbox) {
    let endpoints: Vec<String> = sandbox.endpoints().await.into_keys().collect();
    assert_eq!(endpoints, ["none"], "sandbox left on none only");
    let (_, links) = sandbox.exec(&["ip", "-o", "link"]).await;
    assert!(!links.contains("eth0"), "no interface left in the sandbox: {links}");
    assert!(published(&inspect(sandbox).await).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostport_reaches_the_pod_from_the_lan_the_node_and_another_pod_until_del() {
    let world = World::with_lan("hpreach", 0);
    let (net, lan) = (&world.net, world.lan());
    let port = host_port(0);
    let web = world.pod("web-7d4f", "web", &[tcp(port, 80), udp(port, 53)]).await;
    let client = world.pod("client-5c2a", "client", &[]).await;
    // The shape cri-dockerd gives the sandbox (libdocker.MakePortsAndBindings), as Docker keeps it.
    let created = inspect(&web).await;
    let host_config = created.host_config.as_ref().unwrap();
    assert_eq!(host_config.network_mode.as_deref(), Some("none"));
    assert_eq!(
        serde_json::to_value(&host_config.port_bindings).unwrap(),
        json!({"80/tcp": [{"HostIp": "", "HostPort": port.to_string()}], "53/udp": [{"HostIp": "", "HostPort": port.to_string()}]})
    );
    assert!(published(&created).is_empty(), "nothing published while on none");
    let ip_web: Ipv4Addr = result_ip(&add(net, &web, "1.0.0").await.ok().json()).parse().unwrap();
    add(net, &client, "1.0.0").await.ok();
    assert_eq!(published(&inspect(&web).await), [format!("{port}->53/udp"), format!("{port}->80/tcp")]);
    let traces = docker_traces(port);
    assert!(traces.iter().filter(|t| t.contains("DNAT")).count() == 2 && traces.iter().any(|t| t.contains("docker-proxy")), "{traces:?}");
    serve(&web, &ip_web.to_string()).await;
    let hello = format!("hello from {}", web.pod);
    let node = at(lan.node_address, port);
    let gateway = at(net.gateway.parse().unwrap(), port);
    let loopback = at(Ipv4Addr::LOCALHOST, port);
    let (lan_ns, client_ns) = (Some(lan.netns_path()), Some(PathBuf::from(client.netns())));

    // From the LAN, to the node's address: Docker's DNAT, then its FORWARD accept.
    let ready = eventually(GENEROUS, || {
        let (ns, hello) = (lan_ns.clone(), hello.clone());
        async move { from(ns, move || tcp_hello(node)).await.ok() == Some(hello) }
    });
    assert!(ready.await, "LAN host cannot reach {node} over TCP: {:?}", from(lan_ns.clone(), move || tcp_hello(node)).await);
    assert_eq!(from(lan_ns.clone(), move || udp_ask(node)).await.ok(), Some((node, Some(ip_web))), "LAN host over UDP");

    // From the node: its LAN address (DNAT in OUTPUT) and localhost (docker-proxy).
    for to in [node, loopback] {
        assert_eq!(from(None, move || tcp_hello(to)).await.ok(), Some(hello.clone()), "node to {to} over TCP");
        assert_eq!(from(None, move || udp_ask(to)).await.ok(), Some((to, Some(ip_web))), "node to {to} over UDP");
    }

    // From another pod (hairpin): Docker does not DNAT what comes from the pod bridge, so its
    // docker-proxy answers. TCP works through the node's LAN address; UDP through the pod
    // network's gateway.
    assert_eq!(from(client_ns.clone(), move || tcp_hello(node)).await.ok(), Some(hello.clone()), "other pod to {node} over TCP");
    assert_eq!(from(client_ns.clone(), move || tcp_hello(gateway)).await.ok(), Some(hello.clone()), "other pod to {gateway} over TCP");
    assert_eq!(from(client_ns.clone(), move || udp_ask(gateway)).await.ok(), Some((gateway, Some(ip_web))), "other pod to {gateway} over UDP");
    // Docker's limitation (moby/libnetwork#1729, seen on 20.10 and 26.1): to the node's LAN
    // address, docker-proxy answers UDP from the gateway's address, which a connected client
    // (most resolvers) drops. The README says so; if an engine fixes it, update both.
    assert_eq!(
        from(client_ns.clone(), move || udp_ask(node)).await.ok(),
        Some((gateway, Some(ip_web))),
        "other pod to {node} over UDP: the answer comes from the gateway"
    );

    // DEL closes the port: no DNAT, no docker-proxy, nothing answers from anywhere.
    del(net, &web, "1.0.0").await.ok();
    assert!(eventually(GENEROUS, || async { docker_traces(port).is_empty() }).await, "{:?}", docker_traces(port));
    let closed = [(lan_ns.clone(), node), (None, node), (None, loopback), (client_ns.clone(), node)].map(|(ns, to)| async move {
        let tcp = from(ns.clone(), move || tcp_hello(to)).await.map_err(|e| e.kind());
        (to, tcp, from(ns, move || udp_ask(to)).await.ok())
    });
    // Side by side: each silent UDP probe waits out its timeout.
    for (to, tcp, udp) in futures_util::future::join_all(closed).await {
        assert_eq!(tcp, Err(std::io::ErrorKind::ConnectionRefused), "TCP to {to} after DEL");
        assert_eq!(udp, None, "UDP to {to} after DEL");
    }
    assert!(published(&inspect(&web).await).is_empty());
    del(net, &client, "1.0.0").await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostport_held_by_another_pod_is_a_clear_error_that_changes_nothing() {
    let world = World::new("hpheld");
    let net = &world.net;
    let port = host_port(1);
    let holder = world.pod("holder-0", "holder", &[tcp(port, 80)]).await;
    let ip_holder = result_ip(&add(net, &holder, "1.0.0").await.ok().json());
    serve(&holder, &ip_holder).await;
    let loopback = at(Ipv4Addr::LOCALHOST, port);
    let hello = "hello from holder-0".to_string();
    let ready = eventually(GENEROUS, || {
        let hello = hello.clone();
        async move { from(None, move || tcp_hello(loopback)).await.ok() == Some(hello) }
    });
    assert!(ready.await, "{:?}", from(None, move || tcp_hello(loopback)).await);

    // Same host port, another container port: still the same host port.
    let second = world.pod("second-0", "second", &[tcp(port, 8080)]).await;
    let out = add(net, &second, "1.0.0").await;
    assert_eq!(out.error_code(), 100, "{out:?}");
    let msg = out.json()["msg"].as_str().unwrap().to_string();
    assert!(msg.starts_with(&format!("hostPort {port}/tcp is already held by pod {NAMESPACE}/holder-0 (container {})", &holder.id[..12])), "{msg}");
    assert!(msg.contains("another hostPort"), "{msg}");
    untouched(&second).await;
    assert!(!net.record_path(&second.id).exists(), "no record for the refused pod");
    // The holder is as it was.
    assert_eq!(net.records(), vec![holder.id.clone()]);
    let endpoints = holder.endpoints().await;
    assert_eq!(endpoints[&net.name].ip_address.as_deref(), Some(ip_holder.as_str()));
    assert_eq!(from(None, move || tcp_hello(loopback)).await.ok(), Some(hello.clone()));

    // cri-dockerd runs DEL after a failed ADD: fine, and still nothing changes.
    del(net, &second, "1.0.0").await.ok();
    untouched(&second).await;
    assert_eq!(from(None, move || tcp_hello(loopback)).await.ok(), Some(hello.clone()));

    // The same number over UDP is another port.
    let dns = world.pod("dns-0", "dns", &[udp(port, 53)]).await;
    add(net, &dns, "1.0.0").await.ok();
    assert_eq!(published(&inspect(&dns).await), [format!("{port}->53/udp")]);
    del(net, &dns, "1.0.0").await.ok();

    // Once the holder is gone the refused sandbox gets the port: the failed ADD left it clean.
    del(net, &holder, "1.0.0").await.ok();
    add(net, &second, "1.0.0").await.ok();
    assert_eq!(published(&inspect(&second).await), [format!("{port}->8080/tcp")]);
    del(net, &second, "1.0.0").await.ok();
    assert!(eventually(GENEROUS, || async { docker_traces(port).is_empty() }).await, "{:?}", docker_traces(port));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostport_held_by_a_node_process_is_a_clear_error_that_changes_nothing() {
    let world = World::new("hpnode");
    let net = &world.net;
    let port = host_port(2);
    // A node service on the port (here: this test).
    let service = std::net::TcpListener::bind(("0.0.0.0", port)).expect("the port is free before the test");
    let pod = world.pod("edge-0", "edge", &[tcp(port, 80)]).await;
    let out = add(net, &pod, "1.0.0").await;
    assert_eq!(out.error_code(), 100, "{out:?}");
    let msg = out.json()["msg"].as_str().unwrap().to_string();
    assert!(msg.starts_with(&format!("hostPort {port}/tcp is in use on the node by a process that is not a container")), "{msg}");
    assert!(msg.contains(&format!("ss -lnptu 'sport = :{port}'")), "{msg}");
    untouched(&pod).await;
    assert!(net.records().is_empty());
    assert!(service.local_addr().is_ok(), "the service keeps its port");

    drop(service);
    add(net, &pod, "1.0.0").await.ok();
    assert_eq!(published(&inspect(&pod).await), [format!("{port}->80/tcp")]);
    del(net, &pod, "1.0.0").await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostport_status_lists_each_pods_ports() {
    let world = World::new("hpstatus");
    let net = &world.net;
    let port = host_port(3);
    let gateway = world.pod("gw-agent-0", "gwagent", &[tcp(port, 80), udp(port, 53)]).await;
    let plain = world.pod("plain-0", "plain", &[]).await;
    add(net, &gateway, "1.0.0").await.ok();
    add(net, &plain, "1.0.0").await.ok();

    std::fs::create_dir_all(&world.dir).unwrap();
    let conflist = world.dir.join("10-smarter-cni.conflist");
    let mut plugin = net.config("1.0.0");
    plugin.as_object_mut().unwrap().retain(|key, _| key != "cniVersion" && key != "name");
    std::fs::write(&conflist, json!({"cniVersion": "1.0.0", "name": net.name, "plugins": [plugin]}).to_string()).unwrap();
    let status = |json: bool| {
        let mut cmd = plugin_command(None);
        cmd.args(["status", "--config", conflist.to_str().unwrap(), "--bin-dir", world.dir.to_str().unwrap()]);
        if json {
            cmd.arg("--json");
        }
        String::from_utf8(cmd.env_remove("CNI_COMMAND").output().expect("run smarter-cni status").stdout).unwrap()
    };
    let doc: serde_json::Value = serde_json::from_str(&status(true)).expect("status --json prints JSON");
    let row = |doc: &serde_json::Value, pod: &str| doc["pods"].as_array().unwrap().iter().find(|r| r["pod"] == pod).cloned();
    assert_eq!(
        row(&doc, "gw-agent-0").expect("the pod is listed")["ports"],
        json!([
            {"hostIP": "", "hostPort": port, "containerPort": 80, "protocol": "tcp"},
            {"hostIP": "", "hostPort": port, "containerPort": 53, "protocol": "udp"},
        ]),
        "{doc:#}"
    );
    assert_eq!(row(&doc, "plain-0").expect("the pod is listed")["ports"], json!([]), "{doc:#}");
    let text = status(false);
    let line = text.lines().find(|l| l.contains("gw-agent-0")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains(&format!(" {port}->80/tcp,{port}->53/udp ")), "{text}");
    assert!(text.lines().any(|l| l.contains(" PORTS ")), "{text}");

    del(net, &gateway, "1.0.0").await.ok();
    del(net, &plain, "1.0.0").await.ok();
}

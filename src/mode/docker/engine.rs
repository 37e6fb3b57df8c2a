//! Docker Engine access: the only module that knows bollard. Everything above it speaks
//! in the small types below, so the client library can change without touching CNI code.

use bollard::errors::Error as BollardError;
use bollard::models::{
    EndpointSettings, Ipam, IpamConfig, NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest,
};
use bollard::models::{ContainerCreateBody, EndpointIpamConfig, HostConfig, NetworkingConfig, RestartPolicy, RestartPolicyNameEnum};
use bollard::models::{PortMap, PortSummary};
use bollard::query_parameters::{
    CreateContainerOptions, ImportImageOptions, InspectContainerOptions, InspectNetworkOptions, ListContainersOptions,
    RemoveContainerOptions, StartContainerOptions,
};
use futures_util::StreamExt;
use bollard::{ClientVersion, Docker, API_DEFAULT_VERSION};
use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long an engine may take to answer the first request before we call it unreachable.
/// Runtimes retry on code 11; a hung daemon must not hang pod start.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No socket, connection refused, or no answer in time.
    Unreachable,
    NotFound,
    Conflict,
    /// The engine answered with an error.
    Refused,
}

#[derive(Debug, Clone)]
pub struct EngineError {
    pub kind: ErrorKind,
    pub message: String,
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EngineError {}

impl From<BollardError> for EngineError {
    fn from(err: BollardError) -> Self {
        match err {
            BollardError::DockerResponseServerError { status_code, message } => EngineError {
                kind: match status_code {
                    404 => ErrorKind::NotFound,
                    409 => ErrorKind::Conflict,
                    _ => ErrorKind::Refused,
                },
                message: format!("engine answered {status_code}: {}", message.trim()),
            },
            BollardError::RequestTimeoutError => {
                EngineError { kind: ErrorKind::Unreachable, message: "the engine did not answer in time".into() }
            }
            other => EngineError { kind: ErrorKind::Unreachable, message: other.to_string() },
        }
    }
}

type Result<T> = std::result::Result<T, EngineError>;

/// A container's attachment to one network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoint {
    pub network_id: String,
    pub address: Option<Ipv4Addr>,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mac: Option<String>,
    pub aliases: Vec<String>,
    /// Every name the embedded DNS answers for this endpoint (API 1.44+; empty before).
    pub dns_names: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub hostname: String,
    /// The image as configured (name:tag), not its ID.
    pub image: String,
    pub running: bool,
    pub pid: u32,
    pub resolv_conf_path: Option<PathBuf>,
    pub labels: HashMap<String, String>,
    /// Keyed by network name.
    pub endpoints: HashMap<String, Endpoint>,
    /// The host ports it asks for (`HostConfig.PortBindings`): a pod's hostPorts, which
    /// cri-dockerd sets on the sandbox. Docker publishes them when the sandbox joins a network.
    pub port_bindings: Vec<PortMapping>,
    /// The host ports Docker publishes for it now (`NetworkSettings.Ports`).
    pub published_ports: Vec<PortMapping>,
}

/// One host port mapped to a container port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortMapping {
    pub host_port: u16,
    /// `tcp`, `udp` or `sctp`, as Docker spells them.
    pub protocol: String,
    /// Empty for every address of the node (Docker's "", "0.0.0.0" and "::").
    pub host_ip: String,
    pub container_port: u16,
}

impl PortMapping {
    /// Whether the two need the same host port: same protocol and port on a shared address.
    pub fn overlaps(&self, other: &PortMapping) -> bool {
        self.protocol == other.protocol
            && self.host_port == other.host_port
            && (self.host_ip.is_empty() || other.host_ip.is_empty() || self.host_ip == other.host_ip)
    }

    /// The node's side: `8080/tcp`, or `192.0.2.7:8080/tcp` when bound to one address.
    pub fn host_side(&self) -> String {
        match self.host_ip.as_str() {
            "" => format!("{}/{}", self.host_port, self.protocol),
            ip if ip.contains(':') => format!("[{ip}]:{}/{}", self.host_port, self.protocol),
            ip => format!("{ip}:{}/{}", self.host_port, self.protocol),
        }
    }
}

/// `8080->80/tcp`, or `192.0.2.7:8080->80/tcp` (Docker's own notation, without the address
/// when every address is meant).
impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.host_side();
        let host = host.rsplit_once('/').map_or(host.as_str(), |(h, _)| h);
        write!(f, "{host}->{}/{}", self.container_port, self.protocol)
    }
}

/// A running container and the host ports Docker publishes for it.
#[derive(Debug, Clone, Default)]
pub struct Publisher {
    pub id: String,
    pub name: String,
    pub labels: HashMap<String, String>,
    pub ports: Vec<PortMapping>,
}

/// A host port Docker could not publish, read from its connect error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInUse {
    pub host_port: u16,
    /// Only the userland proxy's message names it.
    pub protocol: Option<String>,
}

impl EngineError {
    /// The port behind a failed connect, when a held host port was the cause. The words are
    /// the same on 20.10 and 26.1: "Bind for 0.0.0.0:8080 failed: port is already allocated"
    /// (a container of this engine has it) and "Error starting userland proxy: listen tcp4
    /// 0.0.0.0:8080: bind: address already in use" (something else on the node has it).
    pub fn port_in_use(&self) -> Option<PortInUse> {
        let port_of = |address: &str| address.trim_end_matches(':').rsplit_once(':')?.1.parse().ok();
        let message = self.message.as_str();
        if message.contains("port is already allocated") {
            let address = message.split("Bind for ").nth(1)?.split_whitespace().next()?;
            return Some(PortInUse { host_port: port_of(address)?, protocol: None });
        }
        if message.contains("address already in use") {
            let mut words = message.split("listen ").nth(1)?.split_whitespace();
            let protocol = words.next()?.trim_end_matches(['4', '6']).to_string();
            return Some(PortInUse { host_port: port_of(words.next()?)?, protocol: Some(protocol) });
        }
        None
    }
}

#[derive(Debug, Clone, Default)]
pub struct Network {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    /// IDs of attached containers.
    pub containers: Vec<String>,
}

/// What a network must look like; created from the plugin configuration.
#[derive(Debug, Clone)]
pub struct NetworkSpec {
    pub name: String,
    pub subnet: String,
    pub gateway: String,
    pub ip_range: Option<String>,
    pub labels: HashMap<String, String>,
}

/// A long-running service container on the pod network at a fixed address.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub network: String,
    pub address: Ipv4Addr,
    pub labels: HashMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct EngineVersion {
    pub version: String,
    pub api_version: String,
}

pub struct Engine {
    docker: Docker,
    socket: PathBuf,
    api: (usize, usize),
}

impl Engine {
    /// Connects and negotiates the API version (never pinned: 20.10 speaks 1.41, and 29.x
    /// refuses clients older than 1.44). Fails as `Unreachable` within [`CONNECT_TIMEOUT`].
    pub async fn connect(socket: &Path, request_timeout: Duration) -> Result<Engine> {
        let unreachable = |why: String| EngineError {
            kind: ErrorKind::Unreachable,
            message: format!("cannot reach Docker at unix://{}: {why}; is dockerd running?", socket.display()),
        };
        let socket_text = socket.to_str().ok_or_else(|| unreachable("socket path is not UTF-8".into()))?;
        let server = ping_api_version(socket, CONNECT_TIMEOUT).map_err(|e| unreachable(e.to_string()))?;
        let newest = (API_DEFAULT_VERSION.major_version, API_DEFAULT_VERSION.minor_version);
        let api = server.min(newest);
        let version = ClientVersion { major_version: api.0, minor_version: api.1 };
        let docker = Docker::connect_with_unix(socket_text, request_timeout.as_secs().max(1), &version)
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Engine { docker, socket: socket.to_path_buf(), api })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The negotiated API version as (major, minor).
    pub fn api_version(&self) -> (usize, usize) {
        self.api
    }

    pub async fn version(&self) -> Result<EngineVersion> {
        let v = self.docker.version().await?;
        Ok(EngineVersion { version: v.version.unwrap_or_default(), api_version: v.api_version.unwrap_or_default() })
    }

    /// Inspects a container by ID or name; `None` when there is no such container.
    pub async fn container(&self, id: &str) -> Result<Option<Container>> {
        match self.docker.inspect_container(id, None::<InspectContainerOptions>).await {
            Ok(inspect) => Ok(Some(container_from(inspect))),
            Err(e) => not_found_as_none(e),
        }
    }

    /// IDs of running containers, optionally only those carrying `label` (`key=value`).
    pub async fn running_container_ids(&self, label: Option<&str>) -> Result<Vec<String>> {
        let mut filters = HashMap::from([("status".to_string(), vec!["running".to_string()])]);
        if let Some(label) = label {
            filters.insert("label".to_string(), vec![label.to_string()]);
        }
        let options = ListContainersOptions { all: false, filters: Some(filters), ..Default::default() };
        let list = self.docker.list_containers(Some(options)).await?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }

    /// Running containers that publish host ports, from one list call (the list carries
    /// each container's published ports).
    pub async fn publishers(&self) -> Result<Vec<Publisher>> {
        let options = ListContainersOptions { all: false, ..Default::default() };
        let list = self.docker.list_containers(Some(options)).await?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let ports = published_from_summary(c.ports.unwrap_or_default());
                let name = c.names.and_then(|n| n.into_iter().next()).unwrap_or_default().trim_start_matches('/').to_string();
                (!ports.is_empty()).then(|| Publisher { id: c.id.unwrap_or_default(), name, labels: c.labels.unwrap_or_default(), ports })
            })
            .collect())
    }

    pub async fn network(&self, name: &str) -> Result<Option<Network>> {
        let network = match self.docker.inspect_network(name, None::<InspectNetworkOptions>).await {
            Ok(n) => n,
            Err(e) => return not_found_as_none(e),
        };
        // The API also matches ID prefixes; only an exact name is our network.
        if network.name.as_deref() != Some(name) {
            return Ok(None);
        }
        let first_config = network.ipam.and_then(|ipam| ipam.config).and_then(|c| c.into_iter().next());
        let (subnet, gateway, ip_range) = match first_config {
            Some(c) => (c.subnet, c.gateway, c.ip_range.filter(|r| !r.is_empty())),
            None => (None, None, None),
        };
        Ok(Some(Network {
            id: network.id.unwrap_or_default(),
            name: name.to_string(),
            driver: network.driver.unwrap_or_default(),
            subnet,
            gateway,
            ip_range,
            containers: network.containers.map(|c| c.into_keys().collect()).unwrap_or_default(),
        }))
    }

    pub async fn create_network(&self, spec: &NetworkSpec) -> Result<()> {
        let request = NetworkCreateRequest {
            name: spec.name.clone(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                driver: Some("default".into()),
                config: Some(vec![IpamConfig {
                    subnet: Some(spec.subnet.clone()),
                    gateway: Some(spec.gateway.clone()),
                    ip_range: spec.ip_range.clone(),
                    auxiliary_addresses: None,
                }]),
                options: None,
            }),
            labels: Some(spec.labels.clone()),
            ..Default::default()
        };
        self.docker.create_network(request).await?;
        Ok(())
    }

    pub async fn remove_network(&self, name: &str) -> Result<()> {
        Ok(self.docker.remove_network(name).await?)
    }

    /// Attaches a container with DNS aliases and, optionally, a fixed address.
    pub async fn attach(&self, network: &str, container: &str, aliases: &[String], address: Option<Ipv4Addr>) -> Result<()> {
        let endpoint = EndpointSettings {
            aliases: Some(aliases.to_vec()),
            ipam_config: address.map(|a| EndpointIpamConfig {
                ipv4_address: Some(a.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let request = NetworkConnectRequest { container: container.to_string(), endpoint_config: Some(endpoint) };
        Ok(self.docker.connect_network(network, request).await?)
    }

    /// Detaches a container; `false` when it was not attached or is gone.
    pub async fn detach(&self, network: &str, container: &str) -> Result<bool> {
        let request = NetworkDisconnectRequest { container: container.to_string(), force: Some(true) };
        match self.docker.disconnect_network(network, request).await {
            Ok(()) => Ok(true),
            Err(e) => {
                let err = EngineError::from(e);
                // 20.10 answers 500/403 "is not connected" instead of 404.
                if err.kind == ErrorKind::NotFound || err.message.contains("is not connected") {
                    Ok(false)
                } else {
                    Err(err)
                }
            }
        }
    }

    pub async fn image_exists(&self, image: &str) -> Result<bool> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) => not_found_as_none::<()>(e).map(|_| false),
        }
    }

    /// `docker load` of an image archive (the output of `docker save`).
    pub async fn load_image(&self, archive: &Path) -> Result<()> {
        let bytes = std::fs::read(archive).map_err(|e| EngineError {
            kind: ErrorKind::Refused,
            message: format!("cannot read image archive {}: {e}", archive.display()),
        })?;
        let mut progress =
            self.docker.import_image(ImportImageOptions { quiet: true, ..Default::default() }, bollard::body_full(bytes.into()), None);
        while let Some(item) = progress.next().await {
            let info = item?;
            if let Some(detail) = info.error_detail {
                return Err(EngineError { kind: ErrorKind::Refused, message: detail.message.unwrap_or_default() });
            }
        }
        Ok(())
    }

    /// Creates and starts a service container (restart=always) at `spec.address`.
    pub async fn run_service(&self, spec: &ServiceSpec) -> Result<String> {
        let endpoint = EndpointSettings {
            ipam_config: Some(EndpointIpamConfig { ipv4_address: Some(spec.address.to_string()), ..Default::default() }),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: Some(spec.command.clone()),
            entrypoint: Some(Vec::new()),
            labels: Some(spec.labels.clone()),
            host_config: Some(HostConfig {
                network_mode: Some(spec.network.clone()),
                restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::ALWAYS), maximum_retry_count: None }),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(spec.network.clone(), endpoint)])),
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions { name: Some(spec.name.clone()), ..Default::default() };
        let created = self.docker.create_container(Some(options), body).await?;
        self.start(&created.id).await?;
        Ok(created.id)
    }

    pub async fn start(&self, container: &str) -> Result<()> {
        Ok(self.docker.start_container(container, None::<StartContainerOptions>).await?)
    }

    pub async fn remove_container(&self, container: &str) -> Result<()> {
        let options = RemoveContainerOptions { force: true, ..Default::default() };
        match self.docker.remove_container(container, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) => not_found_as_none::<()>(e).map(|_| ()),
        }
    }
}

/// The engine's API version from the `Api-Version` header of `GET /_ping`. Cheap for the
/// engine, unlike `/version` (bollard's negotiation), which makes dockerd ask containerd and
/// run `runc --version`: 6-16 ms on every pod start. Plain HTTP/1.0 over the socket, so the
/// engine closes the connection after answering; bounded by `timeout` when it never does.
fn ping_api_version(socket: &Path, timeout: Duration) -> std::io::Result<(usize, usize)> {
    use std::io::{Error, ErrorKind as IoKind, Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")?;
    let mut response = Vec::new();
    stream.take(16 * 1024).read_to_end(&mut response).map_err(|e| match e.kind() {
        IoKind::WouldBlock | IoKind::TimedOut => Error::new(IoKind::TimedOut, format!("no answer within {} s", timeout.as_secs())),
        _ => e,
    })?;
    parse_api_version(&response).ok_or_else(|| Error::new(IoKind::InvalidData, "the answer to /_ping carries no Api-Version"))
}

fn parse_api_version(response: &[u8]) -> Option<(usize, usize)> {
    let text = std::str::from_utf8(response.get(..response.windows(4).position(|w| w == b"\r\n\r\n")?)?).ok()?;
    let mut lines = text.split("\r\n");
    if !lines.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let value = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim().eq_ignore_ascii_case("api-version").then(|| value.trim())
    })?;
    let (major, minor) = value.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn not_found_as_none<T>(err: BollardError) -> Result<Option<T>> {
    let err = EngineError::from(err);
    if err.kind == ErrorKind::NotFound {
        Ok(None)
    } else {
        Err(err)
    }
}

fn container_from(inspect: bollard::models::ContainerInspectResponse) -> Container {
    let state = inspect.state.unwrap_or_default();
    let config = inspect.config.unwrap_or_default();
    let settings = inspect.network_settings.unwrap_or_default();
    let published_ports = port_mappings(settings.ports);
    let endpoints = settings
        .networks
        .unwrap_or_default()
        .into_iter()
        .map(|(name, ep)| {
            let endpoint = Endpoint {
                network_id: ep.network_id.unwrap_or_default(),
                address: ep.ip_address.as_deref().and_then(|a| a.parse().ok()),
                prefix_len: ep.ip_prefix_len.and_then(|l| u8::try_from(l).ok()).unwrap_or(0),
                gateway: ep.gateway.as_deref().and_then(|g| g.parse().ok()),
                mac: ep.mac_address.filter(|m| !m.is_empty()),
                aliases: ep.aliases.unwrap_or_default(),
                dns_names: ep.dns_names.unwrap_or_default(),
            };
            (name, endpoint)
        })
        .collect();
    Container {
        id: inspect.id.unwrap_or_default(),
        name: inspect.name.unwrap_or_default().trim_start_matches('/').to_string(),
        hostname: config.hostname.unwrap_or_default(),
        image: config.image.unwrap_or_default(),
        running: state.running.unwrap_or(false),
        pid: state.pid.and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
        resolv_conf_path: inspect.resolv_conf_path.filter(|p| !p.is_empty()).map(PathBuf::from),
        labels: config.labels.unwrap_or_default(),
        endpoints,
        port_bindings: port_mappings(inspect.host_config.and_then(|h| h.port_bindings)),
        published_ports,
    }
}

/// `{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}` (PortBindings, and NetworkSettings.Ports,
/// where Docker lists 0.0.0.0 and :: for one binding) as one mapping per host port, sorted.
/// An empty or ranged HostPort (Docker picks one) is skipped: there is nothing to check yet.
fn port_mappings(map: Option<PortMap>) -> Vec<PortMapping> {
    let mut mappings = Vec::new();
    for (key, bindings) in map.unwrap_or_default() {
        let (port, protocol) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let Ok(container_port) = port.parse() else { continue };
        for binding in bindings.unwrap_or_default() {
            let Some(host_port) = binding.host_port.as_deref().and_then(|p| p.parse().ok()).filter(|p| *p != 0) else {
                continue;
            };
            let host_ip = any_address_as_empty(binding.host_ip.as_deref());
            mappings.push(PortMapping { host_port, protocol: protocol.to_string(), host_ip, container_port });
        }
    }
    mappings.sort();
    mappings.dedup();
    mappings
}

fn published_from_summary(ports: Vec<PortSummary>) -> Vec<PortMapping> {
    let mut mappings: Vec<PortMapping> = ports
        .into_iter()
        .filter_map(|p| {
            Some(PortMapping {
                host_port: p.public_port.filter(|p| *p != 0)?,
                protocol: p.typ.map(|t| t.to_string()).filter(|t| !t.is_empty()).unwrap_or_else(|| "tcp".into()),
                host_ip: any_address_as_empty(p.ip.as_deref()),
                container_port: p.private_port,
            })
        })
        .collect();
    mappings.sort();
    mappings.dedup();
    mappings
}

fn any_address_as_empty(ip: Option<&str>) -> String {
    match ip.unwrap_or("") {
        "" | "0.0.0.0" | "::" => String::new(),
        ip => ip.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(host_ip: &str, host_port: u16, container_port: u16, protocol: &str) -> PortMapping {
        PortMapping { host_port, protocol: protocol.into(), host_ip: host_ip.into(), container_port }
    }

    #[test]
    fn port_bindings_as_cri_dockerd_sets_them_and_ports_as_docker_publishes_them() {
        // cri-dockerd (libdocker.MakePortsAndBindings): HostIp is the pod's hostIP, "" when unset.
        let asked: PortMap = serde_json::from_str(
            r#"{"80/tcp": [{"HostIp": "", "HostPort": "8080"}], "53/udp": [{"HostIp": "", "HostPort": "8080"}],
                "9000/tcp": [{"HostIp": "192.0.2.7", "HostPort": "9000"}], "7/tcp": [{"HostIp": "", "HostPort": ""}]}"#,
        )
        .unwrap();
        assert_eq!(
            port_mappings(Some(asked)),
            [mapping("", 8080, 80, "tcp"), mapping("", 8080, 53, "udp"), mapping("192.0.2.7", 9000, 9000, "tcp")]
        );
        // What inspect shows once published: one binding on 0.0.0.0 and on ::, and the
        // exposed port nobody published.
        let published: PortMap = serde_json::from_str(
            r#"{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}], "443/tcp": null}"#,
        )
        .unwrap();
        assert_eq!(port_mappings(Some(published)), [mapping("", 8080, 80, "tcp")]);
        assert!(port_mappings(None).is_empty());

        let listed: Vec<PortSummary> = serde_json::from_str(
            r#"[{"IP": "0.0.0.0", "PrivatePort": 53, "PublicPort": 8080, "Type": "udp"},
                {"IP": "::", "PrivatePort": 53, "PublicPort": 8080, "Type": "udp"},
                {"PrivatePort": 443, "Type": "tcp"}]"#,
        )
        .unwrap();
        assert_eq!(published_from_summary(listed), [mapping("", 8080, 53, "udp")]);
    }

    #[test]
    fn port_mappings_read_like_docker_ps() {
        assert_eq!(mapping("", 8080, 80, "tcp").to_string(), "8080->80/tcp");
        assert_eq!(mapping("192.0.2.7", 53, 5353, "udp").to_string(), "192.0.2.7:53->5353/udp");
        assert_eq!(mapping("fd00::1", 8080, 80, "tcp").to_string(), "[fd00::1]:8080->80/tcp");
        assert_eq!(mapping("", 8080, 80, "udp").host_side(), "8080/udp");
        assert_eq!(mapping("192.0.2.7", 8080, 80, "tcp").host_side(), "192.0.2.7:8080/tcp");
    }

    #[test]
    fn a_host_port_is_shared_only_by_protocol_port_and_address() {
        let every = mapping("", 8080, 80, "tcp");
        assert!(every.overlaps(&mapping("", 8080, 9090, "tcp")), "container port does not matter");
        assert!(every.overlaps(&mapping("192.0.2.7", 8080, 80, "tcp")));
        assert!(mapping("192.0.2.7", 8080, 80, "tcp").overlaps(&every));
        assert!(!every.overlaps(&mapping("", 8080, 80, "udp")));
        assert!(!every.overlaps(&mapping("", 8081, 80, "tcp")));
        assert!(!mapping("192.0.2.7", 8080, 80, "tcp").overlaps(&mapping("192.0.2.8", 8080, 80, "tcp")));
    }

    #[test]
    fn port_in_use_from_the_engines_connect_errors() {
        let error = |message: &str| EngineError { kind: ErrorKind::Refused, message: message.into() };
        // Seen on 20.10.24 and 26.1.5 (engine answered 500).
        let allocated = error("engine answered 500: driver failed programming external connectivity on endpoint k8s_POD_b (7eb8ab2c62d1): Bind for 0.0.0.0:18760 failed: port is already allocated");
        assert_eq!(allocated.port_in_use(), Some(PortInUse { host_port: 18760, protocol: None }));
        let proxy = error("engine answered 500: driver failed programming external connectivity on endpoint k8s_POD_c (9aa5aa75c8a6): Error starting userland proxy: listen tcp4 0.0.0.0:18761: bind: address already in use");
        assert_eq!(proxy.port_in_use(), Some(PortInUse { host_port: 18761, protocol: Some("tcp".into()) }));
        let udp6 = error("Error starting userland proxy: listen udp6 [::]:5353: bind: address already in use");
        assert_eq!(udp6.port_in_use(), Some(PortInUse { host_port: 5353, protocol: Some("udp".into()) }));
        assert_eq!(error("engine answered 404: No such container: f00d").port_in_use(), None);
        assert_eq!(error("Bind for nonsense failed: port is already allocated").port_in_use(), None);
    }

    #[test]
    fn api_version_from_ping_headers() {
        let answer = b"HTTP/1.1 200 OK\r\nApi-Version: 1.45\r\nContent-Length: 2\r\n\r\nOK";
        assert_eq!(parse_api_version(answer), Some((1, 45)));
        let lower = b"HTTP/1.0 200 OK\r\napi-version:1.41\r\n\r\n";
        assert_eq!(parse_api_version(lower), Some((1, 41)));
        assert_eq!(parse_api_version(b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nOK"), None);
        assert_eq!(parse_api_version(b"garbage"), None);
        assert_eq!(parse_api_version(b"SSH-2.0\r\nApi-Version: 1.45\r\n\r\n"), None);
    }

    #[test]
    fn ping_times_out_on_a_silent_engine() {
        let dir = std::env::temp_dir().join(format!("smarter-cni-ping-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("docker.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let started = std::time::Instant::now();
        let err = ping_api_version(&socket, Duration::from_millis(200)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Docker mode (`k3s agent --docker`): Docker owns the pod network. The sandbox container
//! moves from `none` to a Docker user network with its DNS names as aliases, and Docker's
//! embedded DNS answers them. `engine` is the only engine client, `network` the network's
//! shape, `hostport` the checks before Docker publishes a pod's hostPorts.

pub mod engine;
pub mod hostport;
pub mod network;
pub mod node;

use crate::cni::{code, Call, CniError, Dns, InterfaceResult};
use crate::config::PluginConfig;
use crate::dns::records::Record;
use crate::dns::resolv;
use crate::mode::{Attached, Attachment, PodNetwork};
use crate::netns::NamespaceId;
use crate::plugin::{pod_names, short};
use engine::{Container, Engine, EngineError, ErrorKind};
use std::collections::HashSet;
use std::path::Path;

/// Docker names the first interface of a container that had only `none` this way.
const DOCKER_IFNAME: &str = "eth0";
/// The label cri-dockerd puts on pod sandbox (pause) containers.
pub const SANDBOX_LABEL: &str = "io.kubernetes.docker.type=podsandbox";

pub struct DockerMode {
    engine: Engine,
    config: PluginConfig,
}

impl DockerMode {
    pub async fn connect(config: &PluginConfig) -> Result<DockerMode, CniError> {
        Ok(DockerMode { engine: connect(config).await?, config: config.clone() })
    }
}

impl PodNetwork for DockerMode {
    async fn attach(&self, call: &Call) -> Result<Attachment, CniError> {
        let (engine, config) = (&self.engine, &self.config);
        require_docker_ifname(&call.env.ifname)?;
        let sandbox = find_sandbox(engine, call).await?.ok_or_else(|| unknown_container(call))?;
        if !sandbox.running {
            return Err(CniError::new(code::UNKNOWN_CONTAINER, format!("sandbox container {} is not running", short(&sandbox.id))));
        }
        network::ensure(engine, config).await?;
        let names = pod_names(config, call, Some(&sandbox.hostname));
        let fresh = !sandbox.endpoints.contains_key(&config.network);
        if fresh {
            connect_sandbox(engine, config, &sandbox, &names.names).await?;
        }
        match read_back(engine, config, call, &sandbox).await {
            Ok(interface) => Ok(Attachment { interface, container: sandbox.id.clone(), names, fresh }),
            Err(err) => {
                if fresh {
                    rollback_connect(engine, config, &sandbox.id).await;
                }
                Err(err)
            }
        }
    }

    async fn undo(&self, _call: &Call, attachment: &Attachment) {
        rollback_connect(&self.engine, &self.config, &attachment.container).await;
    }

    async fn detach(&self, call: &Call, record: Option<&Record>) -> Result<(), CniError> {
        let (engine, config) = (&self.engine, &self.config);
        let mut sandbox = find_sandbox(engine, call).await?;
        if sandbox.is_none() {
            if let Some(record) = record {
                sandbox = engine.container(&record.container).await.map_err(engine_error)?;
            }
        }
        if let Some(sandbox) = sandbox.filter(|s| s.endpoints.contains_key(&config.network)) {
            engine.detach(&config.network, &sandbox.id).await.map_err(|e| {
                CniError::new(code::ENGINE_FAILURE, format!("cannot disconnect {} from {}", short(&sandbox.id), config.network))
                    .with_details(e.message)
            })?;
        }
        Ok(())
    }

    async fn check(&self, call: &Call) -> Result<Vec<String>, CniError> {
        let (engine, config) = (&self.engine, &self.config);
        require_docker_ifname(&call.env.ifname)?;
        let sandbox = find_sandbox(engine, call).await?.ok_or_else(|| unknown_container(call))?;
        let mut problems = Vec::new();
        if let Err(err) = network::verify(engine, config).await {
            problems.push(err.msg);
        }
        match sandbox.endpoints.get(&config.network) {
            None => problems.push(format!("sandbox is not attached to Docker network {}", config.network)),
            Some(endpoint) => {
                let actual = endpoint.address.map(|a| format!("{a}/{}", endpoint.prefix_len));
                if let Some(expected) = call.conf.prev_result_ipv4() {
                    if actual.as_deref() != Some(expected.as_str()) {
                        problems.push(format!("address is {} but prevResult says {expected}", actual.as_deref().unwrap_or("none")));
                    }
                }
                let names = pod_names(config, call, Some(&sandbox.hostname));
                let known: HashSet<&String> = endpoint.aliases.iter().chain(&endpoint.dns_names).collect();
                let missing: Vec<&String> = names.names.iter().filter(|n| !known.contains(n)).collect();
                if !missing.is_empty() {
                    problems.push(format!("DNS names missing on the endpoint: {missing:?}"));
                }
            }
        }
        if let Some(path) = &sandbox.resolv_conf_path {
            match resolv::uses_embedded_dns(path, Some(config.dns.address)) {
                Ok(true) => {}
                Ok(false) => problems.push(format!(
                    "{} does not name {} and node DNS {} as its nameservers",
                    path.display(),
                    resolv::EMBEDDED_DNS,
                    config.dns.address
                )),
                Err(e) => problems.push(format!("cannot read {}: {e}", path.display())),
            }
        }
        Ok(problems)
    }

    /// Pod sandboxes (by cri-dockerd's label) on the network.
    async fn list(&self) -> Result<Vec<Attached>, CniError> {
        let (engine, config) = (&self.engine, &self.config);
        let mut attached = Vec::new();
        if let Some(net) = engine.network(&config.network).await.map_err(engine_error)? {
            for id in &net.containers {
                let Ok(Some(container)) = engine.container(id).await else { continue };
                if is_pod_sandbox(&container) {
                    attached.push(Attached { attachment_id: None, container: container.id });
                }
            }
        }
        Ok(attached)
    }

    async fn release(&self, attached: &Attached) -> Result<bool, CniError> {
        self.engine.detach(&self.config.network, &attached.container).await.map_err(engine_error)
    }

    async fn ready(&self) -> Result<(), CniError> {
        network::verify(&self.engine, &self.config).await
    }
}

/// After the engine attached the sandbox: read back the address and point the pod's
/// resolv.conf at Docker's embedded DNS.
async fn read_back(engine: &Engine, config: &PluginConfig, call: &Call, sandbox: &Container) -> Result<InterfaceResult, CniError> {
    let attached = engine.container(&sandbox.id).await.map_err(engine_error)?.ok_or_else(|| unknown_container(call))?;
    let endpoint = attached.endpoints.get(&config.network).ok_or_else(|| {
        CniError::new(code::ENGINE_FAILURE, format!("Docker reports no endpoint on {} after connecting", config.network))
    })?;
    let address = endpoint.address.ok_or_else(|| {
        CniError::new(code::ENGINE_FAILURE, format!("Docker gave the sandbox no IPv4 address on {}", config.network))
    })?;
    if let Some(path) = &attached.resolv_conf_path {
        resolv::point_at_embedded_dns(path, Some(config.dns.address)).map_err(|e| {
            CniError::io(format!("cannot point {} at Docker's embedded DNS: {e}", path.display()))
        })?;
    }
    Ok(InterfaceResult {
        ifname: DOCKER_IFNAME.to_string(),
        mac: endpoint.mac.clone(),
        sandbox: call.env.netns.clone(),
        address,
        prefix_len: if endpoint.prefix_len > 0 { endpoint.prefix_len } else { config.subnet.prefix_len },
        gateway: endpoint.gateway.or(Some(config.gateway)),
        default_route: true,
        dns: Dns { nameservers: vec![resolv::EMBEDDED_DNS.to_string(), config.dns.address.to_string()], ..Dns::default() },
    })
}

/// Moves the sandbox from `none` to the pod network with its DNS aliases. Docker publishes
/// the pod's hostPorts (cri-dockerd sets them as the sandbox's PortBindings) as it connects.
async fn connect_sandbox(engine: &Engine, config: &PluginConfig, sandbox: &Container, aliases: &[String]) -> Result<(), CniError> {
    if !sandbox.port_bindings.is_empty() {
        hostport::ensure_free(engine, sandbox).await?;
    }
    let had_none = sandbox.endpoints.contains_key("none");
    if had_none {
        engine.detach("none", &sandbox.id).await.map_err(engine_error)?;
    }
    if let Err(err) = engine.attach(&config.network, &sandbox.id, aliases, None).await {
        if had_none {
            let _ = engine.attach("none", &sandbox.id, &[], None).await;
        }
        if let Some(in_use) = err.port_in_use() {
            // Taken since the check (a race, or a holder we could not see).
            return Err(hostport::taken(engine, sandbox, &in_use).await.with_details(err.message));
        }
        return Err(CniError::new(
            code::ENGINE_FAILURE,
            format!("cannot connect sandbox {} to Docker network {}", short(&sandbox.id), config.network),
        )
        .with_details(err.message));
    }
    Ok(())
}

async fn rollback_connect(engine: &Engine, config: &PluginConfig, container: &str) {
    let _ = engine.detach(&config.network, container).await;
    let _ = engine.attach("none", container, &[], None).await;
}

/// A cri-dockerd pod sandbox (pause container), by its label.
pub fn is_pod_sandbox(container: &Container) -> bool {
    let (key, value) = SANDBOX_LABEL.split_once('=').unwrap_or((SANDBOX_LABEL, ""));
    container.labels.get(key).map(String::as_str) == Some(value)
}

/// The sandbox: `CNI_CONTAINERID` when Docker knows it, else `K8S_POD_INFRA_CONTAINER_ID`,
/// else the running container whose network namespace is `CNI_NETNS`.
async fn find_sandbox(engine: &Engine, call: &Call) -> Result<Option<Container>, CniError> {
    if let Some(found) = engine.container(&call.env.container_id).await.map_err(engine_error)? {
        return Ok(Some(found));
    }
    if let Some(infra) = &call.env.args.pod_infra_container_id {
        if let Some(found) = engine.container(infra).await.map_err(engine_error)? {
            return Ok(Some(found));
        }
    }
    if call.env.netns.is_empty() {
        return Ok(None);
    }
    let Ok(target) = NamespaceId::of(Path::new(&call.env.netns)) else {
        return Ok(None);
    };
    for id in engine.running_container_ids(None).await.map_err(engine_error)? {
        let Some(container) = engine.container(&id).await.map_err(engine_error)? else { continue };
        if container.pid > 0 && NamespaceId::of_pid(container.pid).ok() == Some(target) {
            return Ok(Some(container));
        }
    }
    Ok(None)
}

fn require_docker_ifname(ifname: &str) -> Result<(), CniError> {
    if ifname == DOCKER_IFNAME {
        return Ok(());
    }
    Err(CniError::invalid_env(format!(
        "CNI_IFNAME={ifname:?} is not supported: Docker names the pod interface {DOCKER_IFNAME}; configure the runtime to use {DOCKER_IFNAME}"
    )))
}

pub async fn connect(config: &PluginConfig) -> Result<Engine, CniError> {
    Engine::connect(&config.docker_socket, config.timeout).await.map_err(engine_error)
}

/// Unreachable engines are "try again later" (11): the runtime retries on its own.
pub fn engine_error(err: EngineError) -> CniError {
    let code = match err.kind {
        ErrorKind::Unreachable => code::TRY_AGAIN_LATER,
        _ => code::ENGINE_FAILURE,
    };
    CniError::new(code, err.message)
}

fn unknown_container(call: &Call) -> CniError {
    CniError::new(
        code::UNKNOWN_CONTAINER,
        format!(
            "no Docker container matches CNI_CONTAINERID={}, K8S_POD_INFRA_CONTAINER_ID={} or CNI_NETNS={:?}",
            call.env.container_id,
            call.env.args.pod_infra_container_id.as_deref().unwrap_or("(unset)"),
            call.env.netns
        ),
    )
}

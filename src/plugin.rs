//! The smarter-cni plugin: what each CNI verb does, top to bottom. Protocol handling is in
//! `cni`, engine access in `docker`, names and records in `dns`.

use crate::cni::{code, Call, CniError, Dns, InterfaceResult, Plugin};
use crate::config::{DnsMode, PluginConfig};
use crate::dns::domains::{DomainsFile, Update};
use crate::dns::names::PodNames;
use crate::dns::records::{Record, RecordStore};
use crate::dns::resolv;
use crate::docker::{Container, Engine, EngineError, ErrorKind};
use crate::hostport;
use crate::log;
use crate::netns::NamespaceId;
use crate::network;
use std::collections::HashSet;
use std::future::Future;
use std::path::Path;

/// Docker names the first interface of a container that had only `none` this way.
const DOCKER_IFNAME: &str = "eth0";
/// The label cri-dockerd puts on pod sandbox (pause) containers.
pub const SANDBOX_LABEL: &str = "io.kubernetes.docker.type=podsandbox";

pub struct SmarterCni;

impl Plugin for SmarterCni {
    fn add(&self, call: &Call) -> Result<InterfaceResult, CniError> {
        block_on(add(call))
    }
    fn del(&self, call: &Call) -> Result<(), CniError> {
        block_on(del(call))
    }
    fn check(&self, call: &Call) -> Result<(), CniError> {
        block_on(check(call))
    }
    fn gc(&self, call: &Call) -> Result<(), CniError> {
        block_on(gc(call))
    }
    fn status(&self, call: &Call) -> Result<(), CniError> {
        block_on(status(call))
    }
}

/// One single-threaded runtime per call: the plugin is a short-lived process.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime needs no resources that can fail")
        .block_on(future)
}

async fn add(call: &Call) -> Result<InterfaceResult, CniError> {
    let config = PluginConfig::from_netconf(&call.conf)?;
    require_docker_ifname(&call.env.ifname)?;
    let engine = connect(&config).await?;
    let sandbox = find_sandbox(&engine, call).await?.ok_or_else(|| unknown_container(call))?;
    if !sandbox.running {
        return Err(CniError::new(code::UNKNOWN_CONTAINER, format!("sandbox container {} is not running", short(&sandbox.id))));
    }
    network::ensure(&engine, &config).await?;

    let names = pod_names(&config, call, &sandbox.hostname);
    let newly_attached = !sandbox.endpoints.contains_key(&config.network);
    if newly_attached {
        attach(&engine, &config, &sandbox, &names.names).await?;
    }
    match finish_add(&engine, &config, call, &sandbox, &names).await {
        Ok(result) => Ok(result),
        Err(err) => {
            if newly_attached {
                rollback_attach(&engine, &config, call, &sandbox.id).await;
            }
            Err(err)
        }
    }
}

/// Everything after the engine attached the sandbox: read back the address, fix DNS,
/// write the record. Any failure here is rolled back by the caller.
async fn finish_add(
    engine: &Engine,
    config: &PluginConfig,
    call: &Call,
    sandbox: &Container,
    names: &PodNames,
) -> Result<InterfaceResult, CniError> {
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
    let record = Record {
        attachment_id: call.env.container_id.clone(),
        container: attached.id.clone(),
        address,
        pod: call.env.args.pod_ref(),
        names: names.names.clone(),
    };
    RecordStore::new(&config.dns.records_dir).write(&record).map_err(|e| {
        CniError::io(format!("cannot write the DNS record in {}: {e}", config.dns.records_dir.display()))
    })?;
    refresh_pod_domains(config).map_err(|e| {
        CniError::io(format!("cannot update node DNS's pod domains in {}: {e}", config.dns.domains_file.display()))
    })?;
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
async fn attach(engine: &Engine, config: &PluginConfig, sandbox: &Container, aliases: &[String]) -> Result<(), CniError> {
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

async fn rollback_attach(engine: &Engine, config: &PluginConfig, call: &Call, container: &str) {
    let _ = engine.detach(&config.network, container).await;
    let _ = engine.attach("none", container, &[], None).await;
    let _ = RecordStore::new(&config.dns.records_dir).remove(&call.env.container_id);
    let _ = refresh_pod_domains(config);
}

/// Keeps node DNS's list of the names it answers itself (the pods' namespaces and names,
/// see `dns::domains`) in step with the records. Host mode only: in container mode node
/// DNS asks Docker's embedded DNS, which knows every pod's names.
pub fn refresh_pod_domains(config: &PluginConfig) -> std::io::Result<Update> {
    if config.dns.mode != DnsMode::Host {
        return Ok(Update::Unchanged);
    }
    let records = RecordStore::new(&config.dns.records_dir);
    let domains = DomainsFile::new(&config.dns.domains_file, &config.dns.pid_file);
    let update = domains.update(|| records.list(), config.dns.domain.as_deref())?;
    if let Update::Rewritten { signalled } = update {
        log::info(&format!(
            "node DNS pod domains now {:?}{}",
            domains.read().unwrap_or_default(),
            if signalled { "; dnsmasq told to re-read them" } else { "; no dnsmasq running to tell" }
        ));
    }
    Ok(update)
}

async fn del(call: &Call) -> Result<(), CniError> {
    let config = PluginConfig::from_netconf(&call.conf)?;
    let records = RecordStore::new(&config.dns.records_dir);
    let record = records.read(&call.env.container_id).ok().flatten();
    let engine = connect(&config).await?;
    let mut sandbox = find_sandbox(&engine, call).await?;
    if sandbox.is_none() {
        if let Some(record) = &record {
            sandbox = engine.container(&record.container).await.map_err(engine_error)?;
        }
    }
    if let Some(sandbox) = sandbox.filter(|s| s.endpoints.contains_key(&config.network)) {
        engine.detach(&config.network, &sandbox.id).await.map_err(|e| {
            CniError::new(code::ENGINE_FAILURE, format!("cannot disconnect {} from {}", short(&sandbox.id), config.network))
                .with_details(e.message)
        })?;
    }
    records
        .remove(&call.env.container_id)
        .map_err(|e| CniError::io(format!("cannot remove the DNS record of {}: {e}", call.env.container_id)))?;
    // The pod is gone either way: a stale claim only keeps answering for its namespace.
    if let Err(e) = refresh_pod_domains(&config) {
        log::warn(&format!("cannot update node DNS's pod domains in {}: {e}", config.dns.domains_file.display()));
    }
    Ok(())
}

async fn check(call: &Call) -> Result<(), CniError> {
    let config = PluginConfig::from_netconf(&call.conf)?;
    require_docker_ifname(&call.env.ifname)?;
    let engine = connect(&config).await?;
    let sandbox = find_sandbox(&engine, call).await?.ok_or_else(|| unknown_container(call))?;
    let mut problems = Vec::new();
    if let Err(err) = network::verify(&engine, &config).await {
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
            let names = pod_names(&config, call, &sandbox.hostname);
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
    match RecordStore::new(&config.dns.records_dir).read(&call.env.container_id) {
        Ok(Some(_)) => {}
        Ok(None) => problems.push(format!("no DNS record in {}", config.dns.records_dir.display())),
        Err(e) => problems.push(format!("cannot read the DNS record: {e}")),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(code::ATTACHMENT_MISMATCH, format!("attachment of {} is not as ADD left it", call.env.container_id))
            .with_details(problems.join("; ")))
    }
}

/// Detaches every sandbox this plugin attached (by its records, or by cri-dockerd's sandbox
/// label) that the runtime no longer lists. Keeps going past failures and reports them all.
async fn gc(call: &Call) -> Result<(), CniError> {
    let config = PluginConfig::from_netconf(&call.conf)?;
    let valid: HashSet<&str> = call
        .conf
        .valid_attachments
        .iter()
        .flatten()
        .map(|a| a.container_id.as_str())
        .collect();
    let engine = connect(&config).await?;
    let records = RecordStore::new(&config.dns.records_dir);
    let mut failures = Vec::new();
    let mut detached = 0;
    for record in records.list().map_err(|e| CniError::io(format!("cannot list DNS records: {e}")))? {
        if valid.contains(record.attachment_id.as_str()) || valid.contains(record.container.as_str()) {
            continue;
        }
        match engine.detach(&config.network, &record.container).await {
            Ok(was_attached) => detached += usize::from(was_attached),
            Err(e) => {
                failures.push(format!("{}: {}", short(&record.container), e.message));
                continue;
            }
        }
        if let Err(e) = records.remove(&record.attachment_id) {
            failures.push(format!("record {}: {e}", record.attachment_id));
        }
    }
    if let Some(net) = engine.network(&config.network).await.map_err(engine_error)? {
        for id in net.containers.iter().filter(|id| !valid.contains(id.as_str())) {
            let Ok(Some(container)) = engine.container(id).await else { continue };
            if !is_pod_sandbox(&container) {
                continue;
            }
            match engine.detach(&config.network, id).await {
                Ok(was_attached) => detached += usize::from(was_attached),
                Err(e) => failures.push(format!("{}: {}", short(id), e.message)),
            }
        }
    }
    if detached > 0 {
        log::info(&format!("GC detached {detached} stale sandbox(es) from {}", config.network));
    }
    if let Err(e) = refresh_pod_domains(&config) {
        failures.push(format!("pod domains {}: {e}", config.dns.domains_file.display()));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(code::ENGINE_FAILURE, "GC could not remove every stale attachment").with_details(failures.join("; ")))
    }
}

async fn status(call: &Call) -> Result<(), CniError> {
    let not_ready = |reason: String| CniError::new(code::PLUGIN_NOT_AVAILABLE, reason);
    let config = PluginConfig::from_netconf(&call.conf)?;
    let engine = connect(&config).await.map_err(|e| not_ready(e.msg))?;
    network::verify(&engine, &config).await.map_err(|e| not_ready(e.msg))
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

fn pod_names(config: &PluginConfig, call: &Call, hostname: &str) -> PodNames {
    let args = &call.env.args;
    let names = PodNames::new(Some(hostname), args.pod_name.as_deref(), args.pod_namespace.as_deref(), config.dns.domain.as_deref());
    if !names.skipped.is_empty() {
        log::warn(&format!(
            "container={} pod={} skipped names that cannot be DNS names: {}",
            short(&call.env.container_id),
            args.pod_ref().as_deref().unwrap_or("(unknown)"),
            names.skipped_text()
        ));
    }
    names
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

/// Docker's short ID, for messages.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

//! Docker mode's part of the node commands: the Docker network (and DNS container) for
//! `setup`, the engine, the network and the pods on it for `status`.

use super::engine::{Container, Engine};
use super::network;
use crate::config::{DnsMode, PluginConfig};
use crate::dns::records::{Record, RecordStore};
use crate::node::dns_service;
use crate::node::setup::{Level, Report};
use crate::node::status::{split_pod, PodRow, Status};

/// Makes the Docker network (and, in container DNS mode, the DNS container).
pub async fn setup(config: &PluginConfig, report: &mut Report) {
    let engine = match Engine::connect(&config.docker_socket, config.timeout).await {
        Ok(engine) => engine,
        Err(e) => return report.add(Level::Error, format!("{}; start Docker, then run setup again", e.message)),
    };
    if !ensure_network(&engine, config, report).await {
        return;
    }
    if config.dns.mode == DnsMode::Container {
        match dns_service::ensure_container(&engine, config).await {
            Ok(dns_service::Outcome::Unchanged) => {
                report.add(Level::Ok, format!("DNS container {} at {}", config.dns.container_name, config.dns.address))
            }
            Ok(dns_service::Outcome::Started) => report.add(Level::Changed, format!("started DNS container {}", config.dns.container_name)),
            Ok(dns_service::Outcome::Created) => report.add(
                Level::Changed,
                format!("created DNS container {} at {}", config.dns.container_name, config.dns.address),
            ),
            Ok(dns_service::Outcome::Recreated(why)) => {
                report.add(Level::Changed, format!("recreated DNS container {} ({why})", config.dns.container_name))
            }
            Err(e) => report.add(Level::Error, e),
        }
    }
}

/// Creates the network, or recreates one that does not match, but only when nothing but
/// our own DNS container is attached: a network with pods is never removed.
async fn ensure_network(engine: &Engine, config: &PluginConfig, report: &mut Report) -> bool {
    let describe = || {
        let mut text = format!("Docker network {} {} gateway {}", config.network, config.subnet, config.gateway);
        if let Some(range) = config.ip_range {
            text.push_str(&format!(", pods from {range}"));
        }
        for reserved in config.reserved_addresses() {
            text.push_str(&format!(", {reserved} reserved for DNS"));
        }
        text
    };
    let existing = match engine.network(&config.network).await {
        Ok(existing) => existing,
        Err(e) => {
            report.add(Level::Error, e.message);
            return false;
        }
    };
    let mut recreated = None;
    if let Some(net) = &existing {
        let Some(problem) = network::mismatch(net, config) else {
            report.add(Level::Ok, describe());
            return true;
        };
        let dns_container = engine.container(&config.dns.container_name).await.ok().flatten();
        let ours = |id: &String| dns_container.as_ref().is_some_and(|c| &c.id == id && c.labels.contains_key(dns_service::ROLE_LABEL));
        let others: Vec<&String> = net.containers.iter().filter(|id| !ours(id)).collect();
        if !others.is_empty() {
            let short: Vec<&str> = others.iter().map(|id| crate::plugin::short(id)).collect();
            report.add(Level::Error, format!("{problem}. Containers still attached: {short:?}; setup will not remove it"));
            return false;
        }
        if let Some(dns) = dns_container.filter(|c| net.containers.contains(&c.id)) {
            let _ = engine.remove_container(&dns.id).await;
        }
        if let Err(e) = engine.remove_network(&config.network).await {
            report.add(Level::Error, format!("{problem}; removing it failed: {}", e.message));
            return false;
        }
        recreated = Some(problem);
    }
    match network::ensure(engine, config).await {
        Ok(_) => {
            match recreated {
                Some(problem) => report.add(Level::Changed, format!("recreated {} (no pods were attached): {problem}", describe())),
                None => report.add(Level::Changed, format!("created {}", describe())),
            }
            true
        }
        Err(e) => {
            report.add(Level::Error, e.to_string());
            false
        }
    }
}

/// The engine, the network and the pods on it.
pub async fn status(config: &PluginConfig, status: &mut Status) {
    let engine = match Engine::connect(&config.docker_socket, config.timeout).await {
        Ok(engine) => engine,
        Err(e) => {
            status.check("engine", Err((e.message, "start Docker: systemctl start docker".into())));
            return;
        }
    };
    let version = engine.version().await.map(|v| format!("Docker {} (API {})", v.version, v.api_version));
    status.check(
        "engine",
        version.map(|v| format!("{v} at unix://{}", config.docker_socket.display())).map_err(|e| (e.message, "check dockerd's log: journalctl -u docker".into())),
    );
    let net = match network::inspect(&engine, config).await {
        Ok(Some(net)) => net,
        Ok(None) => {
            status.check("network", Err((format!("Docker network {} does not exist", config.network), "run smarter-cni setup".into())));
            return;
        }
        Err(e) => {
            status.check("network", Err((e.msg, "see above".into())));
            return;
        }
    };
    let mut detail = format!("{} {} gateway {}", net.name, config.subnet, config.gateway);
    if let Some(range) = config.ip_range {
        detail.push_str(&format!(", pods from {range}"));
    }
    for reserved in config.reserved_addresses() {
        detail.push_str(&format!(", {reserved} reserved for DNS"));
    }
    status.check("network", Ok(detail));
    if config.dns.mode == DnsMode::Container {
        let dns = engine.container(&config.dns.container_name).await.ok().flatten();
        let address = dns.as_ref().filter(|c| c.running).and_then(|c| c.endpoints.get(&config.network)?.address);
        let result = if address == Some(config.dns.address) {
            Ok(format!("container {} at {}", config.dns.container_name, config.dns.address))
        } else {
            Err((
                format!("DNS container {} is not running at {}", config.dns.container_name, config.dns.address),
                "run smarter-cni setup".into(),
            ))
        };
        status.check("dns-container", result);
    }
    status.pods = pod_rows(&engine, config, &net.containers).await;
}

/// Pods: sandboxes on the network joined with the records the plugin wrote.
async fn pod_rows(engine: &Engine, config: &PluginConfig, attached: &[String]) -> Vec<PodRow> {
    let records: Vec<Record> = RecordStore::new(&config.dns.records_dir).list().unwrap_or_default();
    let mut rows = Vec::new();
    let mut seen = Vec::new();
    for id in attached {
        let Ok(Some(container)) = engine.container(id).await else { continue };
        let record = records.iter().find(|r| &r.container == id);
        if record.is_none() && !crate::mode::docker::is_pod_sandbox(&container) {
            continue;
        }
        seen.push(id.clone());
        rows.push(row_for(config, &container, record));
    }
    for record in records.iter().filter(|r| !seen.contains(&r.container)) {
        let (namespace, pod) = split_pod(record.pod.as_deref());
        rows.push(PodRow {
            namespace,
            pod,
            address: Some(record.address),
            names: record.names.clone(),
            record: true,
            resolves: false,
            ports: Vec::new(),
        });
    }
    rows
}

fn row_for(config: &PluginConfig, container: &Container, record: Option<&Record>) -> PodRow {
    let endpoint = container.endpoints.get(&config.network);
    let (namespace, pod) = match record.and_then(|r| r.pod.as_deref()) {
        Some(pod) => split_pod(Some(pod)),
        None => (
            container.labels.get("io.kubernetes.pod.namespace").cloned().unwrap_or_default(),
            container.labels.get("io.kubernetes.pod.name").cloned().unwrap_or_else(|| container.name.clone()),
        ),
    };
    let names = match record {
        Some(r) => r.names.clone(),
        None => endpoint.map(|e| e.aliases.clone()).unwrap_or_default(),
    };
    PodRow {
        namespace,
        pod,
        address: endpoint.and_then(|e| e.address),
        names,
        record: record.is_some(),
        resolves: false,
        // From the inspect above: no engine call of its own.
        ports: container.published_ports.clone(),
    }
}

//! Node DNS: the dnsmasq container of `container` mode, and asking node DNS a question.

use crate::config::{DnsMode, PluginConfig};
use crate::dns::query::{query_a, Answer};
use crate::dns::resolv::EMBEDDED_DNS;
use crate::mode::docker::engine::{Engine, ServiceSpec};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

pub const ROLE_LABEL: &str = "dev.smarter-cni.role";
const ROLE_DNS: &str = "dns";

/// dnsmasq in the container answers on the pod network and forwards everything to the
/// embedded DNS, which knows every pod's aliases; no cache, so pod changes show at once.
pub fn container_spec(config: &PluginConfig) -> ServiceSpec {
    let command = [
        "dnsmasq",
        "--keep-in-foreground",
        "--log-facility=-",
        "--no-resolv",
        "--no-hosts",
        "--cache-size=0",
        "--interface=eth0",
        "--bind-interfaces",
        "--user=root",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--server={EMBEDDED_DNS}")])
    .collect();
    ServiceSpec {
        name: config.dns.container_name.clone(),
        image: config.dns.image.clone(),
        command,
        network: config.network.clone(),
        address: config.dns.address,
        labels: HashMap::from([(ROLE_LABEL.to_string(), ROLE_DNS.to_string())]),
    }
}

/// What `ensure_container` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Started,
    Created,
    Recreated(String),
}

/// Makes the DNS container exist, run, and sit at its address on the network. Recreates
/// only a container this plugin made (by label); never touches someone else's.
pub async fn ensure_container(engine: &Engine, config: &PluginConfig) -> Result<Outcome, String> {
    let spec = container_spec(config);
    let mut recreate_reason = None;
    if let Some(existing) = engine.container(&spec.name).await.map_err(|e| e.message)? {
        if existing.labels.get(ROLE_LABEL).map(String::as_str) != Some(ROLE_DNS) {
            return Err(format!(
                "a container named {} exists but was not made by smarter-cni; rename it or set \"dns.containerName\"",
                spec.name
            ));
        }
        let address = existing.endpoints.get(&spec.network).and_then(|e| e.address);
        let reason = if existing.image != spec.image {
            Some(format!("image is {}, configuration says {}", existing.image, spec.image))
        } else if existing.running && address != Some(spec.address) {
            Some(format!(
                "address on {} is {}, configuration says {}",
                spec.network,
                address.map(|a| a.to_string()).unwrap_or_else(|| "none".into()),
                spec.address
            ))
        } else {
            None
        };
        match reason {
            None if existing.running => return Ok(Outcome::Unchanged),
            None => {
                engine.start(&existing.id).await.map_err(|e| format!("cannot start {}: {}", spec.name, e.message))?;
                return Ok(Outcome::Started);
            }
            Some(reason) => {
                engine.remove_container(&existing.id).await.map_err(|e| e.message)?;
                recreate_reason = Some(reason);
            }
        }
    }
    if !engine.image_exists(&spec.image).await.map_err(|e| e.message)? {
        let archive = config.dns.image_archive.as_ref().ok_or_else(|| {
            format!(
                "DNS image {} is not in Docker and no \"dns.imageArchive\" is configured; `docker load` it or set the archive path",
                spec.image
            )
        })?;
        engine.load_image(archive).await.map_err(|e| format!("cannot load {}: {}", archive.display(), e.message))?;
        if !engine.image_exists(&spec.image).await.map_err(|e| e.message)? {
            return Err(format!("{} loaded, but it holds no image named {}", archive.display(), spec.image));
        }
    }
    engine
        .run_service(&spec)
        .await
        .map_err(|e| format!("cannot start DNS container {} at {}: {}", spec.name, spec.address, e.message))?;
    Ok(match recreate_reason {
        Some(reason) => Outcome::Recreated(reason),
        None => Outcome::Created,
    })
}

/// Asks node DNS for `name`, as a host process would.
pub fn ask(config: &PluginConfig, name: &str) -> std::io::Result<Answer> {
    query_a(SocketAddr::from((config.dns.address, 53)), name, Duration::from_secs(1))
}

/// A name node DNS must be able to answer for any node: used when there is no pod yet.
/// An NXDOMAIN is an answer too: it proves the server is up.
pub fn is_answering(config: &PluginConfig) -> Result<(), String> {
    let probe = match config.dns.mode {
        DnsMode::Host => "smarter-cni-probe",
        DnsMode::Container => config.dns.container_name.as_str(),
    };
    match ask(config, probe) {
        Ok(Answer::Failure(code)) => Err(format!("node DNS at {} answered with error code {code}", config.dns.address)),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("node DNS at {}:53 does not answer: {e}", config.dns.address)),
    }
}

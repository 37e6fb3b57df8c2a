//! The smarter-cni plugin: what each CNI verb does, top to bottom, whatever the mode. The
//! mode (`crate::mode`) makes or removes the pod's interface; this module keeps the DNS
//! records and node DNS's pod domains in step with it.

use crate::cni::{code, Call, CniError, InterfaceResult, Plugin};
use crate::config::{DnsMode, ModeKind, PluginConfig};
use crate::dns::domains::{DomainsFile, Update};
use crate::dns::names::PodNames;
use crate::dns::records::{Record, RecordStore};
use crate::log;
use crate::mode::bridge::BridgeMode;
use crate::mode::docker::DockerMode;
use crate::mode::{Attached, Attachment, PodNetwork};
use std::collections::HashSet;
use std::future::Future;

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

/// The configured mode, ready to use (Docker mode connects to the engine).
pub enum AnyMode {
    Docker(DockerMode),
    Bridge(BridgeMode),
}

impl AnyMode {
    pub async fn open(config: &PluginConfig) -> Result<AnyMode, CniError> {
        Ok(match config.mode {
            ModeKind::Docker => AnyMode::Docker(DockerMode::connect(config).await?),
            ModeKind::Bridge => AnyMode::Bridge(BridgeMode::new(config)),
        })
    }
}

macro_rules! each_mode {
    ($self:ident, $mode:ident => $body:expr) => {
        match $self {
            AnyMode::Docker($mode) => $body,
            AnyMode::Bridge($mode) => $body,
        }
    };
}

impl PodNetwork for AnyMode {
    async fn attach(&self, call: &Call) -> Result<Attachment, CniError> {
        each_mode!(self, m => m.attach(call).await)
    }
    async fn undo(&self, call: &Call, attachment: &Attachment) {
        each_mode!(self, m => m.undo(call, attachment).await)
    }
    async fn detach(&self, call: &Call, record: Option<&Record>) -> Result<(), CniError> {
        each_mode!(self, m => m.detach(call, record).await)
    }
    async fn check(&self, call: &Call) -> Result<Vec<String>, CniError> {
        each_mode!(self, m => m.check(call).await)
    }
    async fn list(&self) -> Result<Vec<Attached>, CniError> {
        each_mode!(self, m => m.list().await)
    }
    async fn release(&self, attached: &Attached) -> Result<bool, CniError> {
        each_mode!(self, m => m.release(attached).await)
    }
    async fn ready(&self) -> Result<(), CniError> {
        each_mode!(self, m => m.ready().await)
    }
}

async fn add(call: &Call) -> Result<InterfaceResult, CniError> {
    let config = PluginConfig::from_netconf(&call.conf)?;
    let mode = AnyMode::open(&config).await?;
    let attachment = mode.attach(call).await?;
    match write_record(&config, call, &attachment) {
        Ok(()) => Ok(attachment.interface),
        Err(err) => {
            if attachment.fresh {
                mode.undo(call, &attachment).await;
                let _ = RecordStore::new(&config.dns.records_dir).remove(&call.env.container_id);
                let _ = refresh_pod_domains(&config);
            }
            Err(err)
        }
    }
}

fn write_record(config: &PluginConfig, call: &Call, attachment: &Attachment) -> Result<(), CniError> {
    let record = Record {
        attachment_id: call.env.container_id.clone(),
        container: attachment.container.clone(),
        address: attachment.interface.address,
        pod: call.env.args.pod_ref(),
        names: attachment.names.names.clone(),
    };
    RecordStore::new(&config.dns.records_dir).write(&record).map_err(|e| {
        CniError::io(format!("cannot write the DNS record in {}: {e}", config.dns.records_dir.display()))
    })?;
    refresh_pod_domains(config).map_err(|e| {
        CniError::io(format!("cannot update node DNS's pod domains in {}: {e}", config.dns.domains_file.display()))
    })?;
    Ok(())
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
    let mode = AnyMode::open(&config).await?;
    mode.detach(call, record.as_ref()).await?;
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
    let mode = AnyMode::open(&config).await?;
    let mut problems = mode.check(call).await?;
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

/// Releases every attachment (by its record, or as the mode lists it) that the runtime no
/// longer lists. Keeps going past failures and reports them all.
async fn gc(call: &Call) -> Result<(), CniError> {
    let config = PluginConfig::from_netconf(&call.conf)?;
    let valid: HashSet<&str> = call
        .conf
        .valid_attachments
        .iter()
        .flatten()
        .map(|a| a.container_id.as_str())
        .collect();
    let is_valid = |a: &Attached| valid.contains(a.container.as_str()) || a.attachment_id.as_deref().is_some_and(|id| valid.contains(id));
    let mode = AnyMode::open(&config).await?;
    let records = RecordStore::new(&config.dns.records_dir);
    let mut failures = Vec::new();
    let mut released = 0;
    let mut done = HashSet::new();
    let from_records = records.list().map_err(|e| CniError::io(format!("cannot list DNS records: {e}")))?;
    let by_records = from_records.iter().map(|r| (Some(r), Attached { attachment_id: Some(r.attachment_id.clone()), container: r.container.clone() }));
    let listed = mode.list().await?.into_iter().map(|a| (None, a));
    for (record, attached) in by_records.collect::<Vec<_>>().into_iter().chain(listed) {
        if is_valid(&attached) || !done.insert(attached.container.clone()) {
            continue;
        }
        match mode.release(&attached).await {
            Ok(was_held) => released += usize::from(was_held),
            Err(e) => {
                failures.push(format!("{}: {}", short(&attached.container), e.msg));
                continue;
            }
        }
        if let Some(record) = record {
            if let Err(e) = records.remove(&record.attachment_id) {
                failures.push(format!("record {}: {e}", record.attachment_id));
            }
        }
    }
    if released > 0 {
        log::info(&format!("GC released {released} stale attachment(s) from {}", config.network));
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
    let not_ready = |err: CniError| CniError::new(code::PLUGIN_NOT_AVAILABLE, err.msg).with_details(err.details);
    let config = PluginConfig::from_netconf(&call.conf)?;
    let mode = AnyMode::open(&config).await.map_err(not_ready)?;
    mode.ready().await.map_err(not_ready)
}

/// The pod's DNS names, with one log line for the forms that cannot be DNS names.
pub fn pod_names(config: &PluginConfig, call: &Call, hostname: Option<&str>) -> PodNames {
    let args = &call.env.args;
    let names = PodNames::new(hostname, args.pod_name.as_deref(), args.pod_namespace.as_deref(), config.dns.domain.as_deref());
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

/// An ID's first 12 characters, for messages (Docker's short ID).
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

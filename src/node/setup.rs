//! `smarter-cni setup`: idempotent node bootstrap, run at every boot and after upgrades.
//! Each step says ok / changed / warning / error; a second run changes nothing.

use super::{dns_service, files, load_config, NodePaths};
use crate::config::{DnsMode, PluginConfig};
use crate::dns::domains::Update;
use crate::dns::records::RecordStore;
use crate::docker::Engine;
use crate::network;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<(Level, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Changed,
    Warning,
    Error,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Changed => "changed",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

impl Report {
    fn add(&mut self, level: Level, text: impl Into<String>) {
        let text = text.into();
        println!("{:<8} {text}", level.label());
        self.lines.push((level, text));
    }

    pub fn count(&self, level: Level) -> usize {
        self.lines.iter().filter(|(l, _)| *l == level).count()
    }
}

pub fn run(paths: &NodePaths) -> Report {
    let mut report = Report::default();
    let installed = install_conflist(paths, &mut report);
    let config = match load_config(&installed) {
        Ok((_, config)) => {
            report.add(Level::Ok, format!("configuration {} (network {}, {})", installed.display(), config.network, config.subnet));
            config
        }
        Err(e) => {
            report.add(Level::Error, format!("{e}; fix the file, then run setup again"));
            return report;
        }
    };
    warn_if_shadowed(paths, &installed, &mut report);
    install_loopback(paths, &mut report);
    crate::plugin::block_on(engine_steps(&config, &mut report));
    if config.dns.mode == DnsMode::Host {
        match RecordStore::new(&config.dns.records_dir).ensure_dirs() {
            Ok(()) => report.add(Level::Ok, format!("DNS records folder {}", config.dns.records_dir.display())),
            Err(e) => report.add(Level::Error, format!("cannot create {}: {e}", config.dns.records_dir.display())),
        }
        let file = config.dns.domains_file.display();
        match crate::plugin::refresh_pod_domains(&config) {
            Ok(Update::Unchanged) => report.add(Level::Ok, format!("node DNS pod domains {file}")),
            Ok(Update::Rewritten { .. }) => report.add(Level::Changed, format!("node DNS pod domains {file} (from the records)")),
            Err(e) => report.add(Level::Error, format!("cannot write node DNS pod domains {file}: {e}")),
        }
    }
    println!(
        "setup: {} changed, {} warnings, {} errors",
        report.count(Level::Changed),
        report.count(Level::Warning),
        report.count(Level::Error)
    );
    report
}

/// The conflist in the runtime's folder: installed from `--config` when that lives
/// elsewhere and the folder has none; an operator's edited copy is kept, with a warning.
fn install_conflist(paths: &NodePaths, report: &mut Report) -> PathBuf {
    let source = &paths.config;
    let in_conf_dir = source.parent() == Some(paths.conf_dir.as_path());
    if in_conf_dir {
        return source.clone();
    }
    let Some(name) = source.file_name() else { return source.clone() };
    let target = paths.conf_dir.join(name);
    let wanted = match fs::read(source) {
        Ok(bytes) => bytes,
        Err(e) => {
            report.add(Level::Error, format!("cannot read {}: {e}", source.display()));
            return target;
        }
    };
    match fs::read(&target) {
        Ok(current) if current == wanted => report.add(Level::Ok, format!("{} is installed", target.display())),
        Ok(_) => report.add(
            Level::Warning,
            format!("{} differs from {}; keeping the installed (edited) file", target.display(), source.display()),
        ),
        Err(_) => match files::write_atomic(&target, &wanted, 0o644) {
            Ok(()) => report.add(Level::Changed, format!("installed {}", target.display())),
            Err(e) => report.add(Level::Error, format!("cannot install {}: {e}", target.display())),
        },
    }
    target
}

/// cri-dockerd uses the first configuration by name: anything sorting earlier wins.
fn warn_if_shadowed(paths: &NodePaths, installed: &Path, report: &mut Report) {
    match files::cni_configs(&paths.conf_dir) {
        Ok(configs) => match configs.first() {
            Some(first) if first != installed => report.add(
                Level::Warning,
                format!("{} sorts before {} in {}; the runtime will use it instead: remove it or rename ours to sort first",
                    first.display(), installed.display(), paths.conf_dir.display()),
            ),
            _ => report.add(Level::Ok, format!("{} is the runtime's first configuration", installed.display())),
        },
        Err(e) => report.add(Level::Error, format!("cannot list {}: {e}", paths.conf_dir.display())),
    }
}

/// `<bin-dir>/loopback` as a link to this binary, unless a loopback plugin is already there.
fn install_loopback(paths: &NodePaths, report: &mut Report) {
    let link = paths.bin_dir.join("loopback");
    if fs::symlink_metadata(&link).is_ok() {
        let target = fs::canonicalize(&link);
        let ours = std::env::current_exe().and_then(fs::canonicalize);
        match (target, ours) {
            (Ok(t), Ok(o)) if t == o => report.add(Level::Ok, format!("{} is smarter-cni's loopback", link.display())),
            (Ok(t), _) => report.add(Level::Ok, format!("{} present ({}), left as it is", link.display(), t.display())),
            (Err(e), _) => report.add(Level::Error, format!("{} is broken ({e}); remove it and run setup again", link.display())),
        }
        return;
    }
    // A relative link keeps working when the folder is bind-mounted or the binary upgraded.
    let sibling = paths.bin_dir.join("smarter-cni");
    let target = if sibling.exists() {
        PathBuf::from("smarter-cni")
    } else {
        match std::env::current_exe() {
            Ok(exe) => exe,
            Err(e) => return report.add(Level::Error, format!("cannot find this binary for {}: {e}", link.display())),
        }
    };
    match fs::create_dir_all(&paths.bin_dir).and_then(|()| std::os::unix::fs::symlink(&target, &link)) {
        Ok(()) => report.add(Level::Changed, format!("linked {} -> {}", link.display(), target.display())),
        Err(e) => report.add(Level::Error, format!("cannot create {}: {e}", link.display())),
    }
}

async fn engine_steps(config: &PluginConfig, report: &mut Report) {
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

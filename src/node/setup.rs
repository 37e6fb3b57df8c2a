//! `smarter-cni setup`: idempotent node bootstrap, run at every boot and after upgrades.
//! Each step says ok / changed / warning / error; a second run changes nothing.

use super::{files, load_config, NodePaths};
use crate::config::{DnsMode, ModeKind};
use crate::dns::domains::Update;
use crate::dns::records::RecordStore;
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
    pub fn add(&mut self, level: Level, text: impl Into<String>) {
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
    match config.mode {
        ModeKind::Docker => crate::plugin::block_on(crate::mode::docker::node::setup(&config, &mut report)),
        ModeKind::Bridge => crate::mode::bridge::node::setup(&config, &mut report),
    }
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

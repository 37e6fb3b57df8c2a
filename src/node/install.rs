//! `smarter-cni install`: the installer pod of the DaemonSet. The host's folders are
//! mounted at the same paths in the container, so this is the packages' procedure on the
//! same paths: the payload's configuration files (unless the operator changed them), then
//! [`Activation`] with this very binary as the staged one. Then it stays running: the pod's
//! readiness probe (`smarter-cni status --require ...`) is the only thing that polls.

use super::activate::{self, fingerprint, Activation, Settings};
use super::{files, NodePaths};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub const DEFAULT_PAYLOAD_ROOT: &str = "/usr/share/smarter-cni";

pub struct Install {
    pub paths: NodePaths,
    /// `<payload>/etc/cni/net.d/10-smarter-cni.conflist` and `<payload>/etc/smarter-cni/dnsmasq.conf`.
    pub payload: PathBuf,
    /// Land a release that failed its health check on this node before.
    pub retry_failed: bool,
    /// Return after the activation instead of waiting for SIGTERM (tests, one-shot use).
    pub once: bool,
}

/// `<state>/installed-files`: the fingerprint of each configuration file as the installer
/// wrote it. A file that no longer matches was changed on the node and is left alone.
fn ownership_path(paths: &NodePaths) -> PathBuf {
    paths.state_dir.join("installed-files")
}

fn read_ownership(paths: &NodePaths) -> Vec<(String, String)> {
    fs::read_to_string(ownership_path(paths))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(fp, p)| (fp.to_string(), p.to_string())))
        .collect()
}

/// What happened to one configuration file.
#[derive(Debug, PartialEq, Eq)]
pub enum FileOutcome {
    Installed,
    Unchanged,
    Updated,
    /// Changed on the node: kept; the release's version is at the path given.
    KeptOperators(PathBuf),
}

/// Installs `source` at `target` unless the file there is not the one the installer wrote.
fn install_file(paths: &NodePaths, owned: &mut Vec<(String, String)>, source: &Path, target: &Path) -> Result<FileOutcome, String> {
    let wanted = fs::read(source).map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    let key = target.display().to_string();
    let recorded = owned.iter().find(|(_, p)| *p == key).map(|(fp, _)| fp.clone());
    let wanted_fp = fingerprint(source).map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    let outcome = match fs::read(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileOutcome::Installed,
        Err(e) => return Err(format!("cannot read {}: {e}", target.display())),
        Ok(current) if current == wanted => FileOutcome::Unchanged,
        Ok(_) if recorded.is_some() && recorded == fingerprint(target).ok() => FileOutcome::Updated,
        Ok(_) => {
            let dist = paths.state_dir.join("dist").join(target.file_name().unwrap_or_default());
            fs::create_dir_all(paths.state_dir.join("dist")).map_err(|e| format!("cannot create {}: {e}", paths.state_dir.join("dist").display()))?;
            activate::copy_durably(source, &dist, 0o644).map_err(|e| format!("cannot write {}: {e}", dist.display()))?;
            return Ok(FileOutcome::KeptOperators(dist));
        }
    };
    if outcome != FileOutcome::Unchanged {
        files::write_atomic(target, &wanted, 0o644).map_err(|e| format!("cannot write {}: {e}", target.display()))?;
        activate::sync_dir(target.parent().unwrap_or(Path::new("/"))).map_err(|e| format!("cannot flush {}: {e}", target.display()))?;
    }
    owned.retain(|(_, p)| *p != key);
    owned.push((wanted_fp, key));
    Ok(outcome)
}

impl Install {
    fn config_files(&self) -> [(PathBuf, PathBuf); 2] {
        [
            (self.payload.join("etc/cni/net.d/10-smarter-cni.conflist"), self.paths.config.clone()),
            (self.payload.join("etc/smarter-cni/dnsmasq.conf"), self.paths.dnsmasq_config.clone()),
        ]
    }

    pub fn run(&self) -> ExitCode {
        let me = match std::env::current_exe() {
            Ok(me) => me,
            Err(e) => return fatal(&format!("cannot find this binary: {e}"), 2),
        };
        for (source, _) in self.config_files() {
            if !source.is_file() {
                return fatal(&format!("{} is missing: is this the installer image? (--payload DIR)", source.display()), 2);
            }
        }
        // A release that failed here before is not landed again on every container restart
        // (CrashLoopBackOff would put it in place for seconds, again and again).
        let failed = self.paths.state_dir.join("failed");
        if !self.retry_failed && fingerprint(&failed.join("smarter-cni")).ok() == fingerprint(&me).ok() {
            let report = fs::read_to_string(failed.join("report")).unwrap_or_default();
            eprintln!("smarter-cni: this release ({}) failed its health check on this node before:", crate::VERSION);
            for line in report.lines() {
                eprintln!("  - {line}");
            }
            eprintln!("The previous binary stays. After fixing the cause, retry with --retry-failed (the chart's retryFailed),");
            eprintln!("or delete {} on the node; or roll back: kubectl -n smarter-cni rollout undo daemonset/smarter-cni", failed.display());
            return ExitCode::FAILURE;
        }
        let mut owned = read_ownership(&self.paths);
        for (source, target) in self.config_files() {
            match install_file(&self.paths, &mut owned, &source, &target) {
                Ok(FileOutcome::Installed) => println!("smarter-cni: installed {}", target.display()),
                Ok(FileOutcome::Updated) => println!("smarter-cni: updated {}", target.display()),
                Ok(FileOutcome::Unchanged) => {}
                Ok(FileOutcome::KeptOperators(dist)) => println!(
                    "smarter-cni: kept {}: it was changed on this node; this release's version is {} (compare and merge by hand)",
                    target.display(),
                    dist.display()
                ),
                Err(e) => return fatal(&e, 1),
            }
        }
        let text: String = owned.iter().map(|(fp, p)| format!("{fp} {p}\n")).collect();
        if let Err(e) = files::write_atomic(&ownership_path(&self.paths), text.as_bytes(), 0o644) {
            return fatal(&format!("cannot write {}: {e}", ownership_path(&self.paths).display()), 1);
        }
        let activation = Activation {
            bin: self.paths.bin_dir.join("smarter-cni"),
            staged: Some(me),
            retry: "fix the cause, then restart the installer with --retry-failed (or delete the node's failed/ folder), \
                    or roll back: kubectl -n smarter-cni rollout undo daemonset/smarter-cni"
                .into(),
            paths: self.paths.clone(),
            settings: Settings::load(Path::new("/etc/default/smarter-cni")),
        };
        if let Err(failure) = activation.run() {
            failure.report();
            return ExitCode::FAILURE;
        }
        if self.once {
            return ExitCode::SUCCESS;
        }
        let signals = block_termination_signals();
        println!("smarter-cni: installed; waiting (readiness: smarter-cni status --require ...)");
        wait_for(&signals);
        ExitCode::SUCCESS
    }
}

fn fatal(text: &str, code: u8) -> ExitCode {
    eprintln!("smarter-cni install: {text}");
    ExitCode::from(code)
}

/// Blocks SIGTERM and SIGINT (before saying "waiting": one sent right after must not hit
/// the default action, or, as PID 1 of a container, be ignored).
fn block_termination_signals() -> libc::sigset_t {
    // SAFETY: plain signal-mask calls on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Sleeps until one of the blocked signals arrives, without polling.
fn wait_for(signals: &libc::sigset_t) {
    let mut signal = 0;
    // SAFETY: sigwait on a set of signals this thread has blocked.
    unsafe { libc::sigwait(signals, &mut signal) };
    println!("smarter-cni: stopping");
}

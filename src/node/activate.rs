//! The install and upgrade procedure of every route: the packages' scriptlets
//! (`smarter-cni activate`, via packaging/activate) and the installer pod (`smarter-cni
//! install`). One implementation, so both give the same guarantees:
//!
//! 1. the binary being replaced is kept: `<bindir>/.smarter-cni.previous` (a hard link, so
//!    putting it back is one rename(2)) and a durable copy in `<state>/previous/`;
//! 2. the activation record says "activating" (flushed) before anything changes;
//! 3. the new binary is written beside the runtime's, flushed, renamed over it, and the
//!    folder flushed: the runtime executes the whole old or the whole new binary;
//! 4. `setup`, then the health check (the binary runs, answers CNI VERSION for the
//!    conflist's cniVersion, `status` reports the required parts ok, and it reads every DNS
//!    record the previous version wrote);
//! 5. pass: the record says "active"; fail: the previous binary is renamed back, the rejected
//!    one kept in `<state>/failed/`, the record says "rolled-back", exit 1.
//!
//! A power cut or a kill at any step leaves a record that `setup` at the next boot reads
//! ([`recover`]): a binary that never passed its health check on this node is replaced by
//! the previous one, so the node comes up with one consistent binary and a record naming it.

use super::NodePaths;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/smarter-cni";
const RECORD_HEADER: &str = "# smarter-cni activation record v1";
/// Set for the commands an activation runs, so their `setup` does not try to recover it.
const IN_ACTIVATION_ENV: &str = "SMARTER_CNI_IN_ACTIVATION";

// ------------------------------------------------------------------ durable file steps

/// fsync of a folder: makes the renames and links in it survive a power cut.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn hidden_beside(path: &Path, suffix: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    parent(path).join(format!(".{name}.{suffix}"))
}

/// Copies `source` to `target`: written beside it, flushed, renamed over it, folder flushed.
/// Never a write into a file that someone may be executing.
pub fn copy_durably(source: &Path, target: &Path, mode: u32) -> io::Result<()> {
    let tmp = hidden_beside(target, "new");
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut input = fs::File::open(source)?;
        let mut output = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        io::copy(&mut input, &mut output)?;
        output.set_permissions(fs::Permissions::from_mode(mode))?;
        output.sync_all()?;
        // Closed before it is published: exec(2) of a file open for writing is ETXTBSY.
        drop(output);
        fs::rename(&tmp, target)?;
        sync_dir(parent(target))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Makes `target` the same file as `source`: a hard link when both are on one filesystem
/// (nothing more to flush than the folder), else a durable copy. Renamed in either way.
fn link_durably(source: &Path, target: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let (src, dst_dir) = (fs::metadata(source)?, parent(target));
    if fs::metadata(target).is_ok_and(|t| t.dev() == src.dev() && t.ino() == src.ino()) {
        return Ok(());
    }
    if fs::metadata(dst_dir)?.dev() != src.dev() {
        return copy_durably(source, target, src.permissions().mode() & 0o7777);
    }
    let tmp = hidden_beside(target, "tmp");
    let _ = fs::remove_file(&tmp);
    if let Err(e) = fs::hard_link(source, &tmp) {
        // Two bind mounts of one filesystem (the installer pod's hostPaths) share st_dev
        // but refuse links between them (EXDEV).
        if e.raw_os_error() == Some(libc::EXDEV) {
            return copy_durably(source, target, src.permissions().mode() & 0o7777);
        }
        return Err(e);
    }
    fs::rename(&tmp, target).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    sync_dir(dst_dir)
}

/// Writes a small file durably (the record, version notes).
fn write_durably(path: &Path, text: &str) -> io::Result<()> {
    super::files::write_atomic(path, text.as_bytes(), 0o644)?;
    sync_dir(parent(path))
}

/// FNV-1a 64 of a file's bytes: tells two builds apart (not a security check: whoever can
/// write the binaries can write the record too).
pub fn fingerprint(path: &Path) -> io::Result<String> {
    let bytes = fs::read(path)?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    Ok(format!("fnv1a64:{h:016x}"))
}

fn same_content(a: &Path, b: &Path) -> bool {
    match (fs::read(a), fs::read(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The loopback plugin is the same binary under another name (a relative link).
fn ensure_loopback_link(bin_dir: &Path) -> io::Result<()> {
    let link = bin_dir.join("loopback");
    if fs::read_link(&link).is_ok_and(|t| t == Path::new("smarter-cni")) {
        return Ok(());
    }
    let tmp = bin_dir.join(".loopback.new");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink("smarter-cni", &tmp)?;
    fs::rename(&tmp, &link)?;
    sync_dir(bin_dir)
}

// ------------------------------------------------------------------ the record

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// `version` passed its health check and is in place.
    Active,
    /// `pending` is being activated; `version` (if any) is the binary to go back to.
    Activating,
    /// `rejected` failed its health check; `version` is in place again.
    RolledBack,
    /// The activation of `rejected` was cut off (power cut, kill); `setup` put `version` back.
    Interrupted,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Activating => "activating",
            State::RolledBack => "rolled-back",
            State::Interrupted => "interrupted",
        }
    }
    fn parse(s: &str) -> Option<State> {
        [State::Active, State::Activating, State::RolledBack, State::Interrupted].into_iter().find(|st| st.as_str() == s)
    }
}

/// `<state>/activation`: which binary the node should run, and what happened to the last
/// activation. Key=value lines, so an operator (or a fleet tool) can read it with grep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub state: State,
    /// The binary that belongs in place: version and fingerprint (empty before any passed).
    pub version: String,
    pub fingerprint: String,
    /// The binary being activated (state activating).
    pub pending_version: String,
    pub pending_fingerprint: String,
    /// The binary that failed or was cut off (rolled-back, interrupted).
    pub rejected_version: String,
    /// Unix seconds of the last change.
    pub time: u64,
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Record {
    fn new(state: State) -> Record {
        Record {
            state,
            version: String::new(),
            fingerprint: String::new(),
            pending_version: String::new(),
            pending_fingerprint: String::new(),
            rejected_version: String::new(),
            time: now(),
        }
    }

    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("activation")
    }

    pub fn read(state_dir: &Path) -> io::Result<Option<Record>> {
        let text = match fs::read_to_string(Record::path(state_dir)) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut record = Record::new(State::Active);
        let mut state = None;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((key, value)) = line.split_once('=') else { continue };
            let value = value.to_string();
            match key {
                "state" => state = State::parse(&value),
                "version" => record.version = value,
                "fingerprint" => record.fingerprint = value,
                "pending_version" => record.pending_version = value,
                "pending_fingerprint" => record.pending_fingerprint = value,
                "rejected_version" => record.rejected_version = value,
                "time" => record.time = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        record.state = state.ok_or_else(|| io::Error::other(format!("{} has no valid state= line", Record::path(state_dir).display())))?;
        Ok(Some(record))
    }

    fn write(&self, state_dir: &Path) -> io::Result<()> {
        let mut text = format!("{RECORD_HEADER}\nstate={}\n", self.state.as_str());
        for (key, value) in [
            ("version", &self.version),
            ("fingerprint", &self.fingerprint),
            ("pending_version", &self.pending_version),
            ("pending_fingerprint", &self.pending_fingerprint),
            ("rejected_version", &self.rejected_version),
        ] {
            if !value.is_empty() {
                text.push_str(&format!("{key}={value}\n"));
            }
        }
        text.push_str(&format!("time={}\n", self.time));
        write_durably(&Record::path(state_dir), &text)
    }

    /// One line for `status` and logs.
    pub fn summary(&self) -> String {
        let v = |s: &str| if s.is_empty() { "(none)".to_string() } else { s.to_string() };
        match self.state {
            State::Active => format!("{} active", v(&self.version)),
            State::Activating => format!("activating {} (previous {})", v(&self.pending_version), v(&self.version)),
            State::RolledBack => format!("{} active; {} failed its health check and was rolled back", v(&self.version), v(&self.rejected_version)),
            State::Interrupted => {
                format!("{} active; the activation of {} was cut off (power cut?) and undone at boot: retry it", v(&self.version), v(&self.rejected_version))
            }
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "state": self.state.as_str(), "version": self.version, "fingerprint": self.fingerprint,
            "pendingVersion": self.pending_version, "rejectedVersion": self.rejected_version, "time": self.time,
        })
    }
}

/// An exclusive lock on `<state>/activation.lock` for the whole procedure: a package's
/// postinst and the installer pod never activate at once, and boot recovery waits for a
/// running activation. Released by the kernel when the holder dies.
struct ActivationLock(#[allow(dead_code)] fs::File);

impl ActivationLock {
    fn take(state_dir: &Path) -> io::Result<ActivationLock> {
        use std::os::fd::AsRawFd;
        fs::create_dir_all(state_dir)?;
        let file = fs::OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(state_dir.join("activation.lock"))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ActivationLock(file))
    }
}

// ------------------------------------------------------------------ settings

/// The settings of /etc/default/smarter-cni (packages), or the same variables in the
/// environment (they win when set and not empty: the installer pod has no such file).
#[derive(Debug, Clone)]
pub struct Settings {
    pub setup: bool,
    pub health_check: bool,
    pub require: Vec<String>,
    pub config: Option<PathBuf>,
    pub dnsmasq_config: Option<PathBuf>,
}

impl Settings {
    pub fn load(defaults_file: &Path) -> Settings {
        let mut vars = std::collections::HashMap::new();
        if let Ok(text) = fs::read_to_string(defaults_file) {
            for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
                if let Some((key, value)) = line.split_once('=') {
                    let value = value.trim();
                    let unquoted = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')));
                    vars.insert(key.trim().to_string(), unquoted.unwrap_or(value).to_string());
                }
            }
        }
        let get = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty()).or_else(|| vars.get(key).cloned()).filter(|v| !v.is_empty());
        Settings {
            setup: get("SMARTER_CNI_SETUP").is_none_or(|v| v != "no"),
            health_check: get("SMARTER_CNI_HEALTH_CHECK").is_none_or(|v| v != "no"),
            require: get("SMARTER_CNI_HEALTH_REQUIRE").unwrap_or_else(|| "config loopback network".into()).split_whitespace().map(str::to_string).collect(),
            config: get("SMARTER_CNI_CONFIG").map(PathBuf::from),
            dnsmasq_config: get("SMARTER_CNI_DNSMASQ_CONFIG").map(PathBuf::from),
        }
    }
}

// ------------------------------------------------------------------ the procedure

pub struct Activation {
    /// The binary the runtime executes (`<bin-dir>/smarter-cni`).
    pub bin: PathBuf,
    /// The new binary to land on `bin`; `None` when it is already there (dpkg renamed it).
    pub staged: Option<PathBuf>,
    /// How the operator retries (shown on failure).
    pub retry: String,
    pub paths: NodePaths,
    pub settings: Settings,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The new binary is in place and passed its health check.
    Passed,
    /// The health check was skipped (SMARTER_CNI_HEALTH_CHECK=no).
    Unchecked,
}

/// Why an activation did not pass: the problems, and whether the previous binary is back.
#[derive(Debug)]
pub struct Failure {
    pub problems: Vec<String>,
    pub rolled_back: bool,
    /// Already shown to the operator (the rollback report).
    pub reported: bool,
}

impl Failure {
    /// Shows a failure that the rollback report did not.
    pub fn report(&self) {
        if !self.reported {
            for problem in &self.problems {
                eprintln!("smarter-cni activate: {problem}");
            }
        }
    }
}

fn say(text: &str) {
    println!("smarter-cni: {text}");
}

fn version_of(bin: &Path) -> Option<String> {
    let out = Command::new(bin).arg("--version").env(IN_ACTIVATION_ENV, "1").stdin(Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn bare_version(full: &str) -> String {
    full.strip_prefix("smarter-cni ").unwrap_or(full).to_string()
}

impl Activation {
    fn state_dir(&self) -> &Path {
        &self.paths.state_dir
    }
    fn bin_dir(&self) -> &Path {
        parent(&self.bin)
    }
    fn previous(&self) -> PathBuf {
        self.bin_dir().join(".smarter-cni.previous")
    }

    /// Runs the whole procedure. `Err` after a failed health check (rolled back when there
    /// was a previous binary) or a step that could not be done (nothing changed, or undone).
    pub fn run(&self) -> Result<Outcome, Failure> {
        let fail = |problem: String| Failure { problems: vec![problem], rolled_back: false, reported: false };
        let state = self.state_dir().to_path_buf();
        let _lock = ActivationLock::take(&state).map_err(|e| fail(format!("cannot lock {}: {e}", state.display())))?;
        let _ = fs::remove_file(state.join("status.json"));
        let mut record = Record::read(&state).ok().flatten().unwrap_or_else(|| Record::new(State::Active));
        // The previous binary: the one in place now, or the one the package's preinst kept
        // (dpkg has already renamed the new one in).
        let landing = match &self.staged {
            Some(staged) if !staged.is_file() => return Err(fail(format!("no staged binary at {}", staged.display()))),
            Some(staged) if same_content(staged, &self.bin) => {
                say(&format!("{} is already {}", self.bin.display(), version_of(&self.bin).unwrap_or_default()));
                None
            }
            Some(staged) => Some(staged.clone()),
            None => None,
        };
        if landing.is_some() && self.bin.is_file() {
            link_durably(&self.bin, &self.previous()).map_err(|e| fail(format!("cannot keep {}: {e}", self.bin.display())))?;
        }
        let new_bin = landing.clone().unwrap_or_else(|| self.bin.clone());
        let new_fp = fingerprint(&new_bin).map_err(|e| fail(format!("cannot read {}: {e}", new_bin.display())))?;
        let new_version = version_of(&new_bin).map(|v| bare_version(&v)).unwrap_or_else(|| "(does not run)".into());
        let has_previous = self.previous().is_file() && fingerprint(&self.previous()).is_ok_and(|fp| fp != new_fp);
        if has_previous {
            self.keep_previous().map_err(|e| fail(format!("cannot keep the previous binary in {}: {e}", state.display())))?;
            let prev_fp = fingerprint(&self.previous()).unwrap_or_default();
            if record.fingerprint != prev_fp {
                // Installed outside an activation (image, earlier package): name it now.
                record.version = fs::read_to_string(state.join("previous/version")).unwrap_or_default().trim().to_string();
                record.fingerprint = prev_fp;
            }
        } else {
            let _ = fs::remove_file(self.previous());
            let _ = fs::remove_file(state.join("previous/records"));
            if record.fingerprint != new_fp {
                record.version.clear();
                record.fingerprint.clear();
            }
        }
        // Before anything the runtime executes changes: a cut from here on is undone at boot.
        record.state = State::Activating;
        record.pending_version = new_version.clone();
        record.pending_fingerprint = new_fp.clone();
        record.rejected_version.clear();
        record.time = now();
        record.write(&state).map_err(|e| fail(format!("cannot write {}: {e}", Record::path(&state).display())))?;

        let landed = (|| -> io::Result<()> {
            if let Some(staged) = &landing {
                copy_durably(staged, &self.bin, 0o755)?;
                say(&format!("{} is now {}", self.bin.display(), version_of(&self.bin).unwrap_or_else(|| "a binary that does not run".into())));
            } else {
                // dpkg's rename, or a retry: make it durable before the record moves on.
                sync_dir(self.bin_dir())?;
            }
            ensure_loopback_link(self.bin_dir())
        })();
        if let Err(e) = landed {
            return Err(self.roll_back(record, &new_version, vec![format!("cannot install {}: {e}", self.bin.display())]));
        }
        let _ = fs::remove_dir_all(state.join("failed"));

        if !self.settings.health_check {
            say("health check skipped (SMARTER_CNI_HEALTH_CHECK=no)");
            self.finish(record, State::Active).map_err(fail)?;
            return Ok(Outcome::Unchecked);
        }
        self.setup();
        match self.health_check() {
            Ok(()) => {
                say("health check passed");
                self.finish(record, State::Active).map_err(fail)?;
                Ok(Outcome::Passed)
            }
            Err(problems) => Err(self.roll_back(record, &new_version, problems)),
        }
    }

    /// The record names the binary in place; the previous binary's link goes.
    fn finish(&self, mut record: Record, state: State) -> Result<(), String> {
        record.state = state;
        record.version = std::mem::take(&mut record.pending_version);
        record.fingerprint = std::mem::take(&mut record.pending_fingerprint);
        record.write(self.state_dir()).map_err(|e| format!("cannot write {}: {e}", Record::path(self.state_dir()).display()))?;
        let _ = fs::remove_file(self.previous());
        let _ = sync_dir(self.bin_dir());
        let _ = fs::remove_file(self.state_dir().join("status.json"));
        Ok(())
    }

    /// `<state>/previous/`: a durable copy of the previous binary, its version, and the pods
    /// whose DNS record it reads (the new one must read them too).
    fn keep_previous(&self) -> io::Result<()> {
        let dir = self.state_dir().join("previous");
        fs::create_dir_all(&dir)?;
        let previous = self.previous();
        link_durably(&previous, &dir.join("smarter-cni"))?;
        let version = version_of(&previous).map(|v| bare_version(&v)).unwrap_or_else(|| "unknown".into());
        write_durably(&dir.join("version"), &format!("{version}\n"))?;
        let records = match self.status_json(&previous) {
            Some(status) => pods_with_records(&status, true).join("\n"),
            None => String::new(),
        };
        write_durably(&dir.join("records"), &records)
    }

    /// The node paths for `bin`'s setup and status. `--state-dir` only when not the default:
    /// the previous binary may be a release that does not know the flag.
    fn node_args(&self, bin: &Path) -> Vec<String> {
        let mut args = vec![
            "--config".into(),
            self.paths.config.display().to_string(),
            "--dnsmasq-config".into(),
            self.paths.dnsmasq_config.display().to_string(),
            "--bin-dir".into(),
            self.bin_dir().display().to_string(),
        ];
        if bin == self.bin && self.paths.state_dir != Path::new(DEFAULT_STATE_DIR) {
            args.extend(["--state-dir".into(), self.paths.state_dir.display().to_string()]);
        }
        args
    }

    /// `status --json` of `bin` for this node's paths (None: it did not answer in JSON).
    fn status_json(&self, bin: &Path) -> Option<serde_json::Value> {
        if !self.paths.config.is_file() {
            return None;
        }
        let out = Command::new(bin).arg("status").arg("--json").args(self.node_args(bin)).env(IN_ACTIVATION_ENV, "1").stdin(Stdio::null()).output().ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// `setup` by the landed binary, when it can do its work: in bridge mode always, in
    /// Docker mode when Docker answers (else smarter-cni-setup.service runs it at boot).
    fn setup(&self) {
        let bridge = super::load_config(&self.paths.config).is_ok_and(|(_, c)| c.mode == crate::config::ModeKind::Bridge);
        let engine_up = || self.status_json(&self.bin).is_some_and(|s| s["checks"]["engine"]["ok"] == true);
        if self.settings.setup && self.paths.config.is_file() && (bridge || engine_up()) {
            say(&format!("smarter-cni setup --config {}", self.paths.config.display()));
            let ok = Command::new(&self.bin).arg("setup").args(self.node_args(&self.bin)).env(IN_ACTIVATION_ENV, "1").stdin(Stdio::null()).status().is_ok_and(|s| s.success());
            if !ok {
                say("warning: setup reported errors (above); the health check decides");
            }
        } else {
            say("Docker does not answer at the conflist's dockerHost (or SMARTER_CNI_SETUP=no): setup skipped; smarter-cni-setup.service runs it at boot");
        }
    }

    fn health_check(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let Some(version) = version_of(&self.bin) else {
            return Err(vec![format!("{} does not run", self.bin.display())]);
        };
        say(&format!("health check of {version}"));
        // What the runtime runs every 5 s, for the conflist's spec version.
        let want = fs::read(&self.paths.config).ok().and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok()).and_then(|d| d["cniVersion"].as_str().map(str::to_string));
        let answer = Command::new(&self.bin).env("CNI_COMMAND", "VERSION").env(IN_ACTIVATION_ENV, "1").stdin(Stdio::null()).output();
        match answer {
            Ok(out) if out.status.success() => {
                let supported = serde_json::from_slice::<serde_json::Value>(&out.stdout).ok().and_then(|v| v["supportedVersions"].as_array().cloned()).unwrap_or_default();
                if let Some(want) = want.filter(|w| !supported.iter().any(|s| s == w)) {
                    problems.push(format!("CNI VERSION does not list cniVersion {want} of {}: {}", self.paths.config.display(), String::from_utf8_lossy(&out.stdout).trim()));
                }
            }
            Ok(out) => problems.push(format!("CNI VERSION failed: {}", String::from_utf8_lossy(&out.stdout).trim())),
            Err(e) => problems.push(format!("CNI VERSION failed: {e}")),
        }
        let Some(status) = self.status_json(&self.bin) else {
            problems.push("smarter-cni status --json gave no checks".into());
            return Err(problems);
        };
        let _ = write_durably(&self.state_dir().join("status.json"), &status.to_string());
        let checks = status["checks"].as_object().cloned().unwrap_or_default();
        let engine_ok = checks.get("engine").is_some_and(|c| c["ok"] == true);
        for part in &self.settings.require {
            match checks.get(part) {
                Some(check) if check["ok"] == true => {}
                Some(check) => problems.push(format!("{part}: {}", check["detail"].as_str().unwrap_or(""))),
                // status lists "config" only when it cannot load the conflist.
                None if part == "config" => {}
                None => say(&format!("warning: status did not check '{part}' (Docker answers: {}); not required now", if engine_ok { "yes" } else { "no" })),
            }
        }
        for (part, check) in &checks {
            // "activation" is this very activation, in progress.
            if !self.settings.require.contains(part) && part != "activation" && check["ok"] != true {
                say(&format!("warning (not required): {part}: {}", check["detail"].as_str().unwrap_or("")));
            }
        }
        // Records written by the previous version are still read by this one (a pod deleted
        // meanwhile is simply gone from the list: no false alarm under load).
        let before = fs::read_to_string(self.state_dir().join("previous/records")).unwrap_or_default();
        let unread: Vec<String> = pods_with_records(&status, false).into_iter().filter(|p| before.lines().any(|b| b == p)).collect();
        if !unread.is_empty() {
            problems.push(format!("DNS records written by the previous version are not read: {}", unread.join(" ")));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The previous binary back by one rename, the rejected one kept, the record updated.
    fn roll_back(&self, mut record: Record, new_version: &str, problems: Vec<String>) -> Failure {
        let state = self.state_dir();
        let failed = state.join("failed");
        let _ = fs::create_dir_all(&failed);
        if self.bin.is_file() {
            let _ = link_durably(&self.bin, &failed.join("smarter-cni"));
        }
        let _ = write_durably(&failed.join("version"), &format!("smarter-cni {new_version}\n"));
        let _ = write_durably(&failed.join("report"), &format!("{}\n", problems.join("\n")));
        let mut err = io::stderr().lock();
        let _ = writeln!(err, "\n{}", "*".repeat(72));
        let _ = writeln!(err, "smarter-cni {new_version} FAILED its health check:");
        for problem in &problems {
            let _ = writeln!(err, "  - {problem}");
        }
        let previous = self.previous();
        let rolled_back = previous.is_file() && {
            let back = fs::rename(&previous, &self.bin).and_then(|()| sync_dir(self.bin_dir()));
            if let Err(e) = &back {
                let _ = writeln!(err, "could not put the previous binary back: {e}");
            }
            back.is_ok()
        };
        if rolled_back {
            record.state = State::RolledBack;
            record.rejected_version = std::mem::take(&mut record.pending_version);
            record.pending_fingerprint.clear();
            let _ = record.write(state);
            let _ = writeln!(err, "ROLLED BACK: {} is the previous binary again (version {}):", self.bin.display(), record.version);
            let _ = writeln!(err, "  {}", version_of(&self.bin).unwrap_or_else(|| "(does not run)".into()));
            let _ = writeln!(err, "The rejected binary is kept in {}. After fixing the cause, retry with", failed.display());
        } else {
            // First install: the new binary is the only one; it stays, on record as unchecked.
            record.state = State::RolledBack;
            record.rejected_version = std::mem::take(&mut record.pending_version);
            record.version.clear();
            record.fingerprint.clear();
            record.pending_fingerprint.clear();
            let _ = record.write(state);
            let _ = writeln!(err, "NOT ROLLED BACK: there is no previous binary (first install); the new one");
            let _ = writeln!(err, "stays in {}. Fix the cause, then retry with", self.bin.display());
        }
        let _ = writeln!(err, "  {}", self.retry);
        let _ = writeln!(err, "Full report: {} status --config {} --bin-dir {}", self.bin.display(), self.paths.config.display(), self.bin_dir().display());
        let _ = writeln!(err, "{}", "*".repeat(72));
        Failure { problems, rolled_back, reported: true }
    }
}

/// "namespace/pod" of the pods in `status --json` whose `record` is `has_record`.
fn pods_with_records(status: &serde_json::Value, has_record: bool) -> Vec<String> {
    let pods = status["pods"].as_array().cloned().unwrap_or_default();
    pods.iter()
        .filter(|p| p["record"] == has_record)
        .map(|p| format!("{}/{}", p["namespace"].as_str().unwrap_or(""), p["pod"].as_str().unwrap_or("")))
        .collect()
}

// ------------------------------------------------------------------ boot recovery

/// What [`recover`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Recovery {
    /// No record, or the record and the binary agree.
    Consistent,
    /// An activation was cut off; the previous binary is in place again (its version).
    Restored(String),
    /// An activation was cut off on a first install: the only binary stays, unchecked.
    KeptOnly(String),
    /// The binary is not the one on record and no copy of that one is left.
    Unknown(String),
}

/// Run by `setup` (every boot) before anything else: finishes or undoes a half-done
/// activation. Waits for an activation that is running now (its lock).
pub fn recover(bin_dir: &Path, state_dir: &Path) -> io::Result<Recovery> {
    if std::env::var_os(IN_ACTIVATION_ENV).is_some() {
        return Ok(Recovery::Consistent);
    }
    let Some(mut record) = Record::read(state_dir)? else { return Ok(Recovery::Consistent) };
    let bin = bin_dir.join("smarter-cni");
    let in_place = fingerprint(&bin).ok();
    if record.state != State::Activating && in_place.as_deref() == Some(record.fingerprint.as_str()) {
        return Ok(Recovery::Consistent);
    }
    let _lock = ActivationLock::take(state_dir)?;
    // Re-read under the lock: an activation may just have finished.
    let Some(current) = Record::read(state_dir)? else { return Ok(Recovery::Consistent) };
    record = current;
    let in_place = fingerprint(&bin).ok();
    if record.state != State::Activating && in_place.as_deref() == Some(record.fingerprint.as_str()) {
        return Ok(Recovery::Consistent);
    }
    let cut_off = if record.state == State::Activating { record.pending_version.clone() } else { "a binary installed without activation".into() };
    if record.fingerprint.is_empty() {
        // First install: the only binary there is stays (the next activation checks it).
        let _ = fs::remove_file(bin_dir.join(".smarter-cni.new"));
        if in_place.is_none() {
            return Ok(Recovery::Unknown("no binary and no previous one".into()));
        }
        record.state = State::Active;
        record.version = std::mem::take(&mut record.pending_version);
        record.fingerprint = in_place.clone().unwrap_or_default();
        record.pending_fingerprint.clear();
        record.write(state_dir)?;
        return Ok(Recovery::KeptOnly(record.version.clone()));
    }
    if in_place.as_deref() != Some(record.fingerprint.as_str()) {
        let candidates = [bin_dir.join(".smarter-cni.previous"), state_dir.join("previous/smarter-cni")];
        let Some(good) = candidates.iter().find(|c| fingerprint(c).ok().as_deref() == Some(record.fingerprint.as_str())) else {
            return Ok(Recovery::Unknown(format!(
                "{} is not version {} on record, and no copy of that one is left",
                bin.display(),
                record.version
            )));
        };
        if good.parent() == Some(bin_dir) {
            fs::rename(good, &bin)?;
            sync_dir(bin_dir)?;
        } else {
            copy_durably(good, &bin, 0o755)?;
        }
    }
    let _ = fs::remove_file(bin_dir.join(".smarter-cni.new"));
    let _ = fs::remove_file(bin_dir.join(".smarter-cni.previous"));
    let _ = sync_dir(bin_dir);
    record.state = State::Interrupted;
    record.rejected_version = if record.pending_version.is_empty() { cut_off } else { std::mem::take(&mut record.pending_version) };
    record.pending_fingerprint.clear();
    record.time = now();
    record.write(state_dir)?;
    Ok(Recovery::Restored(record.version.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("smarter-cni-activate-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn record_round_trips_and_rejects_garbage() {
        let dir = scratch("record");
        let mut r = Record::new(State::Activating);
        r.version = "0.1.0".into();
        r.fingerprint = "fnv1a64:0000000000000001".into();
        r.pending_version = "0.2.0".into();
        r.pending_fingerprint = "fnv1a64:0000000000000002".into();
        r.write(&dir).unwrap();
        assert_eq!(Record::read(&dir).unwrap(), Some(r));
        fs::write(Record::path(&dir), "state=sideways\n").unwrap();
        assert!(Record::read(&dir).is_err());
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(Record::read(&dir).unwrap(), None);
    }

    #[test]
    fn settings_file_values_lose_to_the_environment_only_when_set() {
        let dir = scratch("settings");
        let file = dir.join("default");
        fs::write(&file, "# comment\nSMARTER_CNI_SETUP=no\nSMARTER_CNI_HEALTH_REQUIRE=\"config dns\"\n").unwrap();
        let s = Settings::load(&file);
        assert!(!s.setup);
        assert!(s.health_check);
        assert_eq!(s.require, ["config", "dns"]);
        let none = Settings::load(&dir.join("absent"));
        assert_eq!(none.require, ["config", "loopback", "network"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A cut-off activation (record "activating", the new binary landed) is undone: the
    /// previous binary is renamed back and the record names it.
    #[test]
    fn recovery_puts_the_previous_binary_back() {
        let dir = scratch("recover");
        let (bin_dir, state) = (dir.join("bin"), dir.join("state"));
        fs::create_dir_all(&bin_dir).unwrap();
        fs::write(bin_dir.join("smarter-cni"), b"new").unwrap();
        fs::write(bin_dir.join(".smarter-cni.previous"), b"old").unwrap();
        let mut r = Record::new(State::Activating);
        r.version = "0.1.0".into();
        r.fingerprint = fingerprint(&bin_dir.join(".smarter-cni.previous")).unwrap();
        r.pending_version = "0.2.0".into();
        r.pending_fingerprint = fingerprint(&bin_dir.join("smarter-cni")).unwrap();
        r.write(&state).unwrap();
        assert_eq!(recover(&bin_dir, &state).unwrap(), Recovery::Restored("0.1.0".into()));
        assert_eq!(fs::read(bin_dir.join("smarter-cni")).unwrap(), b"old");
        assert!(!bin_dir.join(".smarter-cni.previous").exists());
        let after = Record::read(&state).unwrap().unwrap();
        assert_eq!((after.state, after.rejected_version.as_str()), (State::Interrupted, "0.2.0"));
        assert_eq!(recover(&bin_dir, &state).unwrap(), Recovery::Consistent);
        fs::remove_dir_all(&dir).unwrap();
    }
}

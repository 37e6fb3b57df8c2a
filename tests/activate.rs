//! The install procedure shared by the packages and the installer pod (`smarter-cni
//! activate` / `install`), on real files with the real binary: rollback, the activation
//! record, the installer's care for operator-changed files, and power cuts: the procedure
//! killed (SIGKILL, by strace's fault injection) at every rename, link and fsync it makes,
//! then `setup` as at the next boot; and the order of its syncs, read from strace.
//!
//! No engine is needed: the conflist points Docker mode at a socket that does not exist, so
//! `setup` is skipped and the health check requires only what is there (config, loopback).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const PLUGIN: &str = env!("CARGO_BIN_EXE_smarter-cni");

/// One node's folders in a scratch directory, with two distinct runnable builds.
struct Node {
    root: PathBuf,
}

impl Node {
    fn new(tag: &str) -> Node {
        let root = std::env::temp_dir().join(format!("smarter-cni-activate-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for dir in ["bin", "net.d", "etc", "state", "builds", "payload/etc/cni/net.d", "payload/etc/smarter-cni"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let conflist = fs::read_to_string(repo.join("images/rootfs/etc/cni/net.d/10-smarter-cni.conflist"))
            .unwrap()
            .replace("unix:///var/run/docker.sock", &format!("unix://{}/no-docker.sock", root.display()));
        assert!(conflist.contains("no-docker.sock"), "the shipped conflist names dockerHost");
        fs::write(root.join("payload/etc/cni/net.d/10-smarter-cni.conflist"), &conflist).unwrap();
        fs::copy(repo.join("images/rootfs/etc/smarter-cni/dnsmasq.conf"), root.join("payload/etc/smarter-cni/dnsmasq.conf")).unwrap();
        let node = Node { root };
        // Two builds that differ in content (a tail after the ELF image runs the same).
        let stripped = node.root.join("builds/base");
        let ok = Command::new("strip").arg("-o").arg(&stripped).arg(PLUGIN).status().is_ok_and(|s| s.success());
        if !ok {
            fs::copy(PLUGIN, &stripped).unwrap();
        }
        for name in ["old", "new"] {
            let mut bytes = fs::read(&stripped).unwrap();
            bytes.extend_from_slice(format!("smarter-cni test build {name}").as_bytes());
            let path = node.build(name);
            fs::write(&path, bytes).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        node
    }

    fn build(&self, name: &str) -> PathBuf {
        self.root.join("builds").join(name)
    }
    fn bin(&self) -> PathBuf {
        self.root.join("bin/smarter-cni")
    }
    fn state(&self) -> PathBuf {
        self.root.join("state")
    }
    fn config(&self) -> PathBuf {
        self.root.join("net.d/10-smarter-cni.conflist")
    }

    fn paths(&self) -> Vec<String> {
        [
            ("--config", self.config()),
            ("--dnsmasq-config", self.root.join("etc/dnsmasq.conf")),
            ("--bin-dir", self.root.join("bin")),
            ("--state-dir", self.state()),
        ]
        .iter()
        .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
        .collect()
    }

    /// The shipped files in place, as a package or the installer leaves them.
    fn with_config(self) -> Node {
        fs::copy(self.root.join("payload/etc/cni/net.d/10-smarter-cni.conflist"), self.config()).unwrap();
        fs::copy(self.root.join("payload/etc/smarter-cni/dnsmasq.conf"), self.root.join("etc/dnsmasq.conf")).unwrap();
        self
    }

    /// The binary in place as an image bakes it (no activation record).
    fn with_binary(self, name: &str) -> Node {
        fs::copy(self.build(name), self.bin()).unwrap();
        self
    }

    fn command(&self, program: &Path, args: &[&str], require: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args).args(self.paths()).env("SMARTER_CNI_HEALTH_REQUIRE", require).env_remove("SMARTER_CNI_IN_ACTIVATION").stdin(Stdio::null());
        cmd
    }

    /// `activate --bin <bin> --staged <build>`, run by the staged build (as packaging/activate does).
    fn activate_cmd(&self, build: &str, require: &str) -> Command {
        let staged = self.build(build);
        let mut cmd = self.command(&staged, &["activate", "--bin"], require);
        cmd.arg(self.bin()).arg("--staged").arg(&staged);
        cmd
    }

    fn activate(&self, build: &str, require: &str) -> Output {
        self.activate_cmd(build, require).output().unwrap()
    }

    /// `setup` by the binary in place, as smarter-cni-setup.service runs it at boot.
    fn boot_setup(&self) -> Output {
        self.command(&self.bin(), &["setup"], "").output().unwrap()
    }

    fn record(&self) -> String {
        fs::read_to_string(self.state().join("activation")).unwrap_or_default()
    }
    fn record_value(&self, key: &str) -> String {
        self.record().lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap_or("").to_string()
    }
    fn is(&self, path: &Path, build: &str) -> bool {
        fs::read(path).ok() == fs::read(self.build(build)).ok()
    }
    fn in_place(&self) -> Option<&'static str> {
        ["old", "new"].into_iter().find(|b| self.is(&self.bin(), b))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn text(out: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", out.status.code(), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn fingerprint_of(path: &Path) -> String {
    smarter_cni::node::activate::fingerprint(path).unwrap()
}

#[test]
fn upgrade_passes_and_records_the_new_binary() {
    let node = Node::new("upgrade").with_config().with_binary("old");
    let out = node.activate("new", "config loopback");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(node.in_place(), Some("new"));
    assert_eq!(node.record_value("state"), "active", "{}", node.record());
    assert_eq!(node.record_value("fingerprint"), fingerprint_of(&node.bin()));
    assert!(node.is(&node.state().join("previous/smarter-cni"), "old"), "a durable copy of the previous binary is kept");
    assert!(!node.root.join("bin/.smarter-cni.previous").exists(), "the rollback link goes once the check passed");
    assert_eq!(fs::read_link(node.root.join("bin/loopback")).unwrap(), Path::new("smarter-cni"));
    // Again with the same build: nothing lands, the check runs again.
    let again = node.activate("new", "config loopback");
    assert!(again.status.success() && String::from_utf8_lossy(&again.stdout).contains("is already smarter-cni"), "{}", text(&again));
    let status = node.command(&node.bin(), &["status", "--json"], "").output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["checks"]["activation"]["ok"], true, "{doc}");
    assert!(doc["checks"]["activation"]["detail"].as_str().unwrap().ends_with("active"), "{doc}");
    // The installer's probe part: only the binary in place, on record as active, is "release".
    let probe = |build: &str| node.command(&node.build(build), &["status", "--require", "release"], "").output().unwrap().status.success();
    assert!(probe("new"), "the active binary is this release");
    assert!(!probe("old"), "another build is not");
}

#[test]
fn failed_health_check_rolls_back_by_rename() {
    let node = Node::new("rollback").with_config().with_binary("old");
    // Docker is not there, so a required engine fails the check.
    let out = node.activate("new", "config loopback engine");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FAILED its health check") && err.contains("  - engine: ") && err.contains("ROLLED BACK"), "{err}");
    assert_eq!(node.in_place(), Some("old"), "the previous binary is back");
    assert!(node.is(&node.state().join("failed/smarter-cni"), "new"), "the rejected binary is kept");
    assert_eq!(node.record_value("state"), "rolled-back", "{}", node.record());
    assert_eq!(node.record_value("fingerprint"), fingerprint_of(&node.bin()));
    // The restored binary answers the runtime.
    let version = Command::new(node.bin()).env("CNI_COMMAND", "VERSION").stdin(Stdio::null()).output().unwrap();
    assert!(version.status.success() && String::from_utf8_lossy(&version.stdout).contains("1.1.0"));
}

#[test]
fn first_install_that_fails_stays_and_says_so() {
    let node = Node::new("first").with_config();
    let out = node.activate("new", "config engine");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOT ROLLED BACK"), "{}", text(&out));
    assert_eq!(node.in_place(), Some("new"));
    assert_eq!(node.record_value("state"), "rolled-back");
}

#[test]
fn package_route_with_the_binary_already_renamed_in() {
    // dpkg: preinst kept the old binary as .smarter-cni.previous, dpkg renamed the new one in.
    let node = Node::new("dpkg").with_config().with_binary("new");
    fs::copy(node.build("old"), node.root.join("bin/.smarter-cni.previous")).unwrap();
    let mut cmd = node.command(&node.bin(), &["activate", "--bin"], "config loopback engine");
    let out = cmd.arg(node.bin()).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(node.in_place(), Some("old"), "rolled back to preinst's copy");
    // A power cut after dpkg's rename, before postinst: setup at boot puts the recorded one back.
    fs::copy(node.build("new"), node.root.join("bin/.smarter-cni.previous.x")).unwrap();
    fs::rename(node.bin(), node.root.join("bin/.smarter-cni.previous")).unwrap();
    fs::rename(node.root.join("bin/.smarter-cni.previous.x"), node.bin()).unwrap();
    let boot = node.boot_setup();
    assert!(String::from_utf8_lossy(&boot.stdout).contains("interrupted activation was undone"), "{}", text(&boot));
    assert_eq!(node.in_place(), Some("old"));
    assert_eq!(node.record_value("state"), "interrupted", "{}", node.record());
}

/// Every rename, link and fsync of an upgrade, one at a time: the procedure is killed
/// there (SIGKILL on entering the call), then `setup` runs as at the next boot. The node
/// must come up with one whole binary that the record names, and a later activation works.
#[test]
fn killed_at_every_step_the_next_boot_is_consistent() {
    let calls = ["rename", "link", "linkat", "fsync", "fdatasync", "symlink", "unlink"];
    let reference = Node::new("kill-ref").with_config().with_binary("old");
    let log = reference.root.join("strace.log");
    let mut cmd = Command::new("strace");
    cmd.arg("-qq").arg("-o").arg(&log).arg("-e").arg(format!("trace={}", calls.join(",")));
    let traced = cmd.arg("--").args(cmd_line(&reference.activate_cmd("new", "config loopback"))).envs(envs(&reference.activate_cmd("new", "config loopback"))).output().unwrap();
    assert!(traced.status.success(), "{}", text(&traced));
    let trace = fs::read_to_string(&log).unwrap();
    let mut points = Vec::new();
    for call in calls {
        let n = trace.lines().filter(|l| l.starts_with(&format!("{call}("))).count();
        points.extend((1..=n).map(|i| (call, i)));
    }
    assert!(points.len() >= 8, "the procedure renames, links and syncs: {trace}");
    let mut outcomes = std::collections::BTreeMap::new();
    for (call, when) in &points {
        let node = Node::new(&format!("kill-{call}-{when}")).with_config().with_binary("old");
        let activate = node.activate_cmd("new", "config loopback");
        let killed = Command::new("strace")
            .arg("-qq")
            .arg("-o")
            .arg("/dev/null")
            .arg("-e")
            .arg(format!("inject={call}:signal=KILL:when={when}"))
            .arg("--")
            .args(cmd_line(&activate))
            .envs(envs(&activate))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let _ = killed;
        let boot = node.boot_setup();
        let place = node.in_place();
        let what = format!("killed at {call} #{when}: in place {place:?}, record:\n{}\nboot: {}", node.record(), text(&boot));
        assert!(place.is_some(), "{what}");
        let record_fp = node.record_value("fingerprint");
        assert!(record_fp.is_empty() || record_fp == fingerprint_of(&node.bin()), "the record names the binary in place: {what}");
        assert!(matches!(node.record_value("state").as_str(), "" | "active" | "interrupted"), "{what}");
        assert!(!node.root.join("bin/.smarter-cni.new").exists(), "no half-written copy is left: {what}");
        outcomes.insert(format!("{call}#{when}"), format!("{}:{}", place.unwrap(), node.record_value("state")));
        // The next activation (the package manager's retry, the pod's restart) completes.
        let retry = node.activate("new", "config loopback");
        assert!(retry.status.success() && node.in_place() == Some("new"), "retry after {what}\n{}", text(&retry));
        assert_eq!(node.record_value("state"), "active");
    }
    // Killed early the old one stays; killed after the check passed the new one does.
    assert!(outcomes.values().any(|o| o == "old:interrupted"), "{outcomes:?}");
    assert!(outcomes.values().any(|o| o.starts_with("new:active")), "{outcomes:?}");
    println!("{} kill points: {outcomes:?}", points.len());
}

/// What must survive a power cut reaches the disk before what depends on it: each file is
/// flushed before the rename that publishes it, and the folder is flushed after it.
#[test]
fn sync_order_under_strace() {
    let node = Node::new("syncs").with_config().with_binary("old");
    let log = node.root.join("strace.log");
    let activate = node.activate_cmd("new", "config loopback");
    let out = Command::new("strace")
        .arg("-qq")
        .arg("-y")
        .arg("-o")
        .arg(&log)
        .arg("-e")
        .arg("trace=rename,renameat,renameat2,link,linkat,fsync,fdatasync,close")
        .arg("--")
        .args(cmd_line(&activate))
        .envs(envs(&activate))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let trace = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = trace.lines().collect();
    let bin_dir = node.root.join("bin").display().to_string();
    let state = node.state().display().to_string();
    let find = |from: usize, pred: &dyn Fn(&str) -> bool| lines.iter().enumerate().skip(from).find(|(_, l)| pred(l)).map(|(i, _)| i);
    let fsync_of = |path: String| move |l: &str| l.starts_with("fsync(") && l.contains(&format!("<{path}>"));
    let rename_to = |path: String| move |l: &str| l.starts_with("rename") && l.contains(&format!("\"{path}\""));
    let staged_bin = format!("{bin_dir}/.smarter-cni.new");
    let record = format!("{state}/activation");
    let record_staged = format!("{state}/.activation.smarter-cni-new");

    let first_record = find(0, &rename_to(record.clone())).expect(&trace);
    assert!(find(0, &fsync_of(record_staged.clone())).is_some_and(|i| i < first_record), "record flushed before its rename:\n{trace}");
    let record_dir_sync = find(first_record, &fsync_of(state.clone())).expect(&trace);
    let landing = find(0, &|l: &str| l.starts_with("rename") && l.contains(&format!("\"{staged_bin}\"")) && l.contains(&format!("\"{bin_dir}/smarter-cni\""))).expect(&trace);
    assert!(record_dir_sync < landing, "the record says 'activating' on disk before the binary changes:\n{trace}");
    let previous_link = find(0, &rename_to(format!("{bin_dir}/.smarter-cni.previous"))).expect(&trace);
    let previous_sync = find(previous_link, &fsync_of(bin_dir.clone())).expect(&trace);
    assert!(previous_sync < landing, "the rollback link is on disk before the landing:\n{trace}");
    let data_sync = find(0, &fsync_of(staged_bin.clone())).expect(&trace);
    assert!(data_sync < landing, "the new binary's data is flushed before its rename:\n{trace}");
    // exec(2) of a file still open for writing fails (ETXTBSY): the runtime's next call would.
    let closed = find(data_sync, &|l: &str| l.starts_with("close(") && l.contains(&format!("<{staged_bin}>"))).expect(&trace);
    assert!(closed < landing, "the new binary is closed before it is renamed into place:\n{trace}");
    let landing_sync = find(landing, &fsync_of(bin_dir.clone())).expect(&trace);
    let final_record = lines.iter().rposition(|l| rename_to(record.clone())(l)).unwrap();
    assert!(landing < landing_sync && landing_sync < final_record, "the landing is on disk before the record says 'active':\n{trace}");
    assert!(find(final_record, &fsync_of(state.clone())).is_some(), "the final record is flushed:\n{trace}");
    assert!(!lines.iter().any(|l| l.contains(&format!("\"{bin_dir}/smarter-cni\"")) && l.starts_with("open")), "never opened for writing");
}

#[test]
fn installer_keeps_operator_files_and_does_not_reland_a_failed_release() {
    let node = Node::new("install").with_binary("old");
    let install = |build: &str, require: &str, extra: &[&str]| {
        let mut args = vec!["install", "--once", "--payload"];
        let payload = node.root.join("payload").display().to_string();
        args.push(&payload);
        args.extend_from_slice(extra);
        node.command(&node.build(build), &args, require).output().unwrap()
    };
    let out = install("new", "config loopback", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("installed") && stdout.contains("10-smarter-cni.conflist"), "{stdout}");
    assert_eq!(node.in_place(), Some("new"));
    assert_eq!(fs::read(node.config()).unwrap(), fs::read(node.root.join("payload/etc/cni/net.d/10-smarter-cni.conflist")).unwrap());

    // A new release changes a file the installer wrote and nobody touched: updated.
    let payload_dns = node.root.join("payload/etc/smarter-cni/dnsmasq.conf");
    fs::write(&payload_dns, format!("{}# next release\n", fs::read_to_string(&payload_dns).unwrap())).unwrap();
    // The operator edits the conflist: kept byte for byte, the release's copy set aside.
    let edited = fs::read_to_string(node.config()).unwrap().replace("\"mynet\"", "\"mynet\" ");
    fs::write(node.config(), &edited).unwrap();
    let out = install("new", "config loopback", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("kept ") && stdout.contains("changed on this node"), "{stdout}");
    assert!(stdout.contains("updated ") && stdout.contains("dnsmasq.conf"), "{stdout}");
    assert_eq!(fs::read_to_string(node.config()).unwrap(), edited);
    assert!(node.state().join("dist/10-smarter-cni.conflist").is_file());
    assert_eq!(fs::read(node.root.join("etc/dnsmasq.conf")).unwrap(), fs::read(&payload_dns).unwrap());

    // A release that fails its check is rolled back, and not landed again on a restart.
    let out = install("old", "config loopback", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let failed = install("new", "config engine", &[]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    assert_eq!(node.in_place(), Some("old"));
    let record_before = node.record();
    let restart = install("new", "config loopback", &[]);
    assert_eq!(restart.status.code(), Some(1), "{}", text(&restart));
    assert!(String::from_utf8_lossy(&restart.stderr).contains("failed its health check on this node before"), "{}", text(&restart));
    assert_eq!(node.in_place(), Some("old"), "not landed again");
    assert_eq!(node.record(), record_before);
    let retried = install("new", "config loopback", &["--retry-failed"]);
    assert!(retried.status.success() && node.in_place() == Some("new"), "{}", text(&retried));
}

#[test]
fn installer_waits_and_stops_on_sigterm() {
    let node = Node::new("sigterm").with_config();
    let payload = node.root.join("payload").display().to_string();
    let mut child = node.command(&node.build("new"), &["install", "--payload", &payload], "config loopback").stdout(Stdio::piped()).spawn().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("waiting") {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0, "the installer ended early: {seen}");
        seen.push_str(&line);
    }
    assert!(child.try_wait().unwrap().is_none(), "it stays running");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "exit 0 on SIGTERM: {status:?}");
}

#[test]
fn bad_usage_is_exit_2_and_changes_nothing() {
    let node = Node::new("usage").with_config().with_binary("old");
    for args in [vec!["activate"], vec!["activate", "--bin", "relative/smarter-cni"], vec!["install", "--mode", "cloud"], vec!["activate", "--bogus", "x"]] {
        let out = node.command(&node.build("new"), &args, "config").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    }
    assert_eq!(node.in_place(), Some("old"));
    assert!(node.record().is_empty());
}

fn cmd_line(cmd: &Command) -> Vec<std::ffi::OsString> {
    std::iter::once(cmd.get_program().to_os_string()).chain(cmd.get_args().map(|a| a.to_os_string())).collect()
}

fn envs(cmd: &Command) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k.to_os_string(), v.to_os_string()))).collect()
}

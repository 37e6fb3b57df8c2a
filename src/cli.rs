//! The command line when not called as a CNI plugin: help, version, and node commands.

use crate::mode::bridge::hostnames;
use crate::node::{self, NodePaths};
use std::process::ExitCode;

const HELP: &str = "\
smarter-cni: CNI plugin for IoT edge gateways (k3s agent + Docker)

As a CNI plugin the runtime executes it with CNI_COMMAND set (ADD, DEL, CHECK, VERSION,
GC, STATUS) and the network configuration on stdin. Installed as `loopback` (a link to
this binary) it is the CNI loopback plugin.

Usage:
  smarter-cni setup  [PATHS]         prepare the node; safe to run at every boot
  smarter-cni status [PATHS] [--json] [--require PART,...]
                                     show the node's health; exit 1 on any problem, or
                                     with --require only when one of those parts is not ok
                                     (parts: config conflist loopback activation engine
                                     network dns-records dns-config dns-domains dns
                                     dns-container)
  smarter-cni activate --bin FILE [--staged FILE] [--retry TEXT] [PATHS]
                                     install or upgrade step of the packages: land the
                                     binary by rename, setup, health check, roll back
  smarter-cni install [--mode docker|bridge] [PATHS]
                                     the DaemonSet's installer: the same procedure into
                                     the host folders mounted at the same paths, then
                                     wait (the pod's readiness probe runs status)
  smarter-cni hostnames [--config FILE] [--sandbox-dir DIR]
                                     bridge mode's node service: adds each sandbox's
                                     hostname (containerd's <cri root>/sandboxes/<id>/
                                     hostname) to its DNS record; runs until stopped
  smarter-cni --version
  smarter-cni --help                 this text; `smarter-cni COMMAND --help` for one command
";

const SETUP_HELP: &str = "\
Usage: smarter-cni setup [PATHS]

Prepares the node; safe at every boot and after every upgrade (smarter-cni-setup.service
runs it): installs or verifies the conflist, links loopback, creates the pod network, the
DNS records folder and node DNS's pod domains file, and in container DNS mode the DNS
container. A second run changes nothing. Exit 1 when a step failed.
";

const STATUS_HELP: &str = "\
Usage: smarter-cni status [PATHS] [--json] [--require PART,...]

Shows the node's health with a fix for each problem; exit 1 on any problem, or with
--require only when one of those parts is not ok.

  --json             machine-readable output (fields are only ever added)
  --require PARTS    comma-separated: config conflist loopback activation network dns-records
                     dns-config dns-domains dns; Docker mode: engine dns-container;
                     bridge mode: forwarding nat leases
";

const HOSTNAMES_HELP: &str = "\
Usage: smarter-cni hostnames [PATHS] [--sandbox-dir DIR]

Bridge mode's node service, run at boot and kept running: containerd passes no
hostname to CNI but writes <cri root>/sandboxes/<id>/hostname, 2.x only after ADD; this
adds that hostname (and its dns.domain twin) to the sandbox's DNS record as soon as the
file appears (inotify, no polling). Waits for folders that do not exist yet.

  --sandbox-dir DIR  containerd's sandboxes folder (default: the conflist's
                     \"sandboxDir\", else k3s's
                     /var/lib/rancher/k3s/agent/containerd/io.containerd.grpc.v1.cri/sandboxes)
";

const ACTIVATE_HELP: &str = "\
Usage: smarter-cni activate --bin FILE [--staged FILE] [--retry TEXT] [PATHS]

The install and upgrade procedure every package runs after unpacking (through
/usr/lib/smarter-cni/activate), the same as `install` runs in the installer pod:
  1. the binary in place is kept (<bin-dir>/.smarter-cni.previous, and <state>/previous/);
  2. the activation record <state>/activation says \"activating\" (flushed to disk);
  3. --staged is copied beside --bin, flushed, renamed over it, the folder flushed: the
     runtime executes the whole old or the whole new binary, even across a power cut;
  4. `setup` (in Docker mode only when Docker answers), then the health check: the binary
     runs, answers CNI VERSION for the conflist's cniVersion, `status` has the required
     parts ok, and every DNS record of the previous version is read;
  5. pass: the record says \"active\"; fail: the previous binary is renamed back, the
     rejected one kept in <state>/failed/, exit 1. `setup` at boot undoes an activation that
     a power cut or a kill left half-done.

  --bin FILE     the binary the runtime executes (/opt/cni/bin/smarter-cni)
  --staged FILE  the new binary to land on --bin (without: it is already there, e.g. dpkg)
  --retry TEXT   how the operator retries, shown on failure

Settings: /etc/default/smarter-cni, or in the environment: SMARTER_CNI_SETUP=yes|no,
SMARTER_CNI_HEALTH_CHECK=yes|no, SMARTER_CNI_HEALTH_REQUIRE=\"config loopback network\",
SMARTER_CNI_CONFIG, SMARTER_CNI_DNSMASQ_CONFIG. Exit 1: health check failed; 2: usage.
";

const INSTALL_HELP: &str = "\
Usage: smarter-cni install [--mode docker|bridge] [--payload DIR] [--retry-failed] [--once] [PATHS]

The installer of the DaemonSet (image entrypoint). The host's /opt/cni/bin, /etc/cni/net.d,
/etc/smarter-cni, /var/lib/smarter-cni and /run/smarter-cni are mounted at the same paths.
Installs the payload's conflist and dnsmasq.conf (a file changed on the node is kept, and
this release's version put in <state>/dist/), then activates this binary exactly as
`smarter-cni activate` does, then waits for SIGTERM: the pod's readiness probe
(`smarter-cni status --require config,loopback,network`) is the readiness signal.
Exit 1 when the health check failed (the previous binary is back: the pod is not ready
and a rolling update stops); a release that failed on this node is not landed again
until --retry-failed.

  --mode MODE      docker (default) or bridge: which payload to install
  --payload DIR    the files to install (default /usr/share/smarter-cni/<mode>)
  --retry-failed   land this release even though it failed here before
  --once           return after the activation instead of waiting
";

const PATHS_HELP: &str = "\
PATHS:
  --config FILE          the conflist (default /etc/cni/net.d/10-smarter-cni.conflist)
  --conf-dir DIR         the runtime's CNI configuration folder (default: the config's)
  --bin-dir DIR          the runtime's CNI plugin folder (default /opt/cni/bin)
  --dnsmasq-config FILE  node DNS configuration (default /etc/smarter-cni/dnsmasq.conf)
  --state-dir DIR        kept binaries and the activation record (default /var/lib/smarter-cni)
";

/// Help text to stdout; a closed pipe (`| head`) is not an error.
fn print_help(parts: &[&str]) -> ExitCode {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(parts.join("\n").as_bytes());
    ExitCode::SUCCESS
}

fn wants_help(args: &[String]) -> bool {
    args.iter().any(|a| matches!(a.as_str(), "-h" | "--help"))
}

pub fn main(args: &[String]) -> ExitCode {
    let sub_help = match args.first().map(String::as_str) {
        Some("setup") => Some(SETUP_HELP),
        Some("status") => Some(STATUS_HELP),
        Some("hostnames") => Some(HOSTNAMES_HELP),
        Some("activate") => Some(ACTIVATE_HELP),
        Some("install") => Some(INSTALL_HELP),
        _ => None,
    };
    if let Some(help) = sub_help.filter(|_| wants_help(&args[1..])) {
        return print_help(&[help, PATHS_HELP]);
    }
    match args.first().map(String::as_str) {
        None | Some("-h" | "--help" | "help") => {
            print_help(&[HELP, PATHS_HELP])
        }
        Some("-V" | "--version" | "version") => {
            println!("smarter-cni {}", crate::VERSION);
            ExitCode::SUCCESS
        }
        Some("setup") => with_paths(&args[1..], |paths, rest| {
            if let Some(unknown) = rest.first() {
                return usage_error(unknown);
            }
            recover_activation(&paths);
            let report = node::setup::run(&paths);
            exit_code(report.count(node::setup::Level::Error) == 0)
        }),
        Some("status") => with_paths(&args[1..], |paths, rest| {
            let mut json = false;
            let mut required: Option<Vec<String>> = None;
            let mut rest = rest.into_iter();
            while let Some(arg) = rest.next() {
                match arg.as_str() {
                    "--json" => json = true,
                    "--require" => match rest.next() {
                        Some(list) => required = Some(list.split(',').map(str::to_string).collect()),
                        None => return usage_error("--require needs a list of parts"),
                    },
                    other => return usage_error(other),
                }
            }
            let mut status = node::status::run(&paths);
            // The installer pod's probe: ready only once this very binary is the one in place
            // and on record as active (a probe right after start must not see the old one's).
            if required.as_ref().is_some_and(|parts| parts.iter().any(|p| p == "release")) {
                status.check("release", this_release(&paths));
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&status.to_json()).unwrap_or_default());
            } else {
                print!("{}", status.to_text());
            }
            match required {
                Some(parts) => {
                    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
                    let failing = status.failing(&parts);
                    if !failing.is_empty() {
                        eprintln!("smarter-cni: required parts not ok: {}", failing.join(", "));
                    }
                    exit_code(failing.is_empty())
                }
                None => exit_code(status.healthy()),
            }
        }),
        Some("hostnames") => with_paths(&args[1..], |paths, rest| {
            let config = match node::load_config(&paths.config) {
                Ok((_, config)) => config,
                Err(e) => {
                    eprintln!("smarter-cni: {e}");
                    return ExitCode::from(2);
                }
            };
            let sandbox_dir = match rest.as_slice() {
                [] => config.bridge.sandbox_dir.to_string_lossy().into_owned(),
                [flag, dir] if flag == "--sandbox-dir" => dir.clone(),
                [flag] if flag.starts_with("--sandbox-dir=") => flag["--sandbox-dir=".len()..].to_string(),
                [other, ..] => return usage_error(other),
            };
            let records = crate::dns::records::RecordStore::new(&config.dns.records_dir);
            let Err(e) = hostnames::run(sandbox_dir.as_ref(), &records, config.dns.domain.as_deref()) else { return ExitCode::SUCCESS };
            crate::log::error(&format!("hostnames: {e}"));
            eprintln!("smarter-cni: hostnames: {e}");
            ExitCode::FAILURE
        }),
        Some("activate") => with_paths(&args[1..], activate),
        Some("install") => with_paths(&args[1..], install),
        Some(other) => usage_error(other),
    }
}

/// (flag, value) pairs and the switches that were given.
type Flags = (Vec<(String, String)>, Vec<String>);

fn flag_values(rest: Vec<String>, flags: &[&str], switches: &[&str]) -> Result<Flags, ExitCode> {
    let mut values = Vec::new();
    let mut set = Vec::new();
    let mut rest = rest.into_iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if switches.contains(&flag.as_str()) && inline.is_none() {
            set.push(flag);
        } else if flags.contains(&flag.as_str()) {
            match inline.or_else(|| rest.next()) {
                Some(value) => values.push((flag, value)),
                None => {
                    eprintln!("smarter-cni: {flag} needs a value");
                    return Err(ExitCode::from(2));
                }
            }
        } else {
            return Err(usage_error(&arg));
        }
    }
    Ok((values, set))
}

/// Settings of the packages' file (and the environment) override the path defaults.
fn settings_paths(mut paths: NodePaths, settings: &node::activate::Settings) -> NodePaths {
    if let Some(config) = &settings.config {
        paths.config = config.clone();
        paths.conf_dir = config.parent().map(Into::into).unwrap_or_default();
    }
    if let Some(dnsmasq) = &settings.dnsmasq_config {
        paths.dnsmasq_config = dnsmasq.clone();
    }
    paths
}

fn activate(paths: NodePaths, rest: Vec<String>) -> ExitCode {
    let (values, _) = match flag_values(rest, &["--bin", "--staged", "--retry"], &[]) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let value = |name: &str| values.iter().rev().find(|(f, _)| f == name).map(|(_, v)| v.clone());
    let Some(bin) = value("--bin").map(std::path::PathBuf::from).filter(|b| b.is_absolute() && b.file_name().is_some()) else {
        eprintln!("smarter-cni activate: --bin must be an absolute path (usage: smarter-cni activate --bin FILE [--staged FILE])");
        return ExitCode::from(2);
    };
    let settings = node::activate::Settings::load(std::path::Path::new("/etc/default/smarter-cni"));
    let mut paths = settings_paths(paths, &settings);
    paths.bin_dir = bin.parent().map(Into::into).unwrap_or_default();
    let retry = value("--retry").unwrap_or_else(|| format!("smarter-cni activate --bin {}", bin.display()));
    let activation = node::activate::Activation { bin, staged: value("--staged").map(Into::into), retry, paths, settings };
    match activation.run() {
        Ok(_) => ExitCode::SUCCESS,
        Err(failure) => {
            failure.report();
            ExitCode::FAILURE
        }
    }
}

fn install(paths: NodePaths, rest: Vec<String>) -> ExitCode {
    let (values, switches) = match flag_values(rest, &["--mode", "--payload"], &["--retry-failed", "--once"]) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let value = |name: &str| values.iter().rev().find(|(f, _)| f == name).map(|(_, v)| v.clone());
    let mode = value("--mode").unwrap_or_else(|| "docker".into());
    if !matches!(mode.as_str(), "docker" | "bridge") {
        eprintln!("smarter-cni install: --mode must be docker or bridge, got {mode:?}");
        return ExitCode::from(2);
    }
    let settings = node::activate::Settings::load(std::path::Path::new("/etc/default/smarter-cni"));
    let installer = node::install::Install {
        paths: settings_paths(paths, &settings),
        payload: value("--payload").map(Into::into).unwrap_or_else(|| std::path::Path::new(node::install::DEFAULT_PAYLOAD_ROOT).join(&mode)),
        retry_failed: switches.iter().any(|s| s == "--retry-failed"),
        once: switches.iter().any(|s| s == "--once"),
    };
    installer.run()
}

/// A half-done activation (power cut, kill) is finished or undone before setup runs; when
/// the binary in place changed, the rest of setup is that binary's.
fn recover_activation(paths: &NodePaths) {
    use node::activate::Recovery;
    match node::activate::recover(&paths.bin_dir, &paths.state_dir) {
        Ok(Recovery::Consistent) => {}
        Ok(Recovery::Restored(version)) => {
            println!("changed  an interrupted activation was undone: {version} is in place again (retry the upgrade)");
            crate::log::error(&format!("setup: an interrupted activation was undone; {version} is in place again"));
            reexec_if_replaced(paths);
        }
        Ok(Recovery::KeptOnly(version)) => println!("warning  an interrupted first install was kept ({version}); its health check runs at the next activation"),
        Ok(Recovery::Unknown(why)) => println!("warning  activation record: {why}"),
        Err(e) => println!("warning  cannot read the activation record in {}: {e}", paths.state_dir.display()),
    }
}

fn reexec_if_replaced(paths: &NodePaths) {
    use std::os::unix::process::CommandExt;
    let bin = paths.bin_dir.join("smarter-cni");
    let me = std::env::current_exe().ok();
    let same = me.as_ref().and_then(|m| node::activate::fingerprint(m).ok()) == node::activate::fingerprint(&bin).ok();
    if !same && std::env::var_os("SMARTER_CNI_REEXECUTED").is_none() {
        let err = std::process::Command::new(&bin).args(std::env::args_os().skip(1)).env("SMARTER_CNI_REEXECUTED", "1").exec();
        println!("warning  cannot run {} for the rest of setup: {err}", bin.display());
    }
}

fn with_paths(args: &[String], run: impl FnOnce(NodePaths, Vec<String>) -> ExitCode) -> ExitCode {
    match NodePaths::from_args(args) {
        Ok((paths, rest)) => run(paths, rest),
        Err(e) => {
            eprintln!("smarter-cni: {e}");
            ExitCode::from(2)
        }
    }
}

fn usage_error(arg: &str) -> ExitCode {
    eprintln!("smarter-cni: unknown argument {arg:?}; see `smarter-cni --help`");
    ExitCode::from(2)
}

fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The binary running this is the one in `--bin-dir`, and the activation record says it is active.
fn this_release(paths: &NodePaths) -> Result<String, (String, String)> {
    use node::activate::{fingerprint, Record, State};
    let me = std::env::current_exe().and_then(|m| fingerprint(&m)).map_err(|e| (format!("cannot read this binary: {e}"), "-".to_string()))?;
    let bin = paths.bin_dir.join("smarter-cni");
    let wait = "wait for the installer's activation (its log says why it did not finish)".to_string();
    if fingerprint(&bin).ok().as_deref() != Some(me.as_str()) {
        return Err((format!("{} is not this release ({})", bin.display(), crate::VERSION), wait));
    }
    match Record::read(&paths.state_dir) {
        Ok(Some(r)) if r.state == State::Active && r.fingerprint == me => Ok(format!("{} active", crate::VERSION)),
        Ok(Some(r)) => Err((format!("activation record: {}", r.summary()), wait)),
        _ => Err(("no activation record".into(), wait)),
    }
}

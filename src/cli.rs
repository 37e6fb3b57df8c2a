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
                                     (parts: config conflist loopback engine network
                                     dns-records dns-config dns-domains dns dns-container)
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
  --require PARTS    comma-separated: config conflist loopback network dns-records
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

const PATHS_HELP: &str = "\
PATHS:
  --config FILE          the conflist (default /etc/cni/net.d/10-smarter-cni.conflist)
  --conf-dir DIR         the runtime's CNI configuration folder (default: the config's)
  --bin-dir DIR          the runtime's CNI plugin folder (default /opt/cni/bin)
  --dnsmasq-config FILE  node DNS configuration (default /etc/smarter-cni/dnsmasq.conf)
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
            let status = node::status::run(&paths);
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
        Some(other) => usage_error(other),
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

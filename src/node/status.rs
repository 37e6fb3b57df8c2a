//! `smarter-cni status`: the node at a glance. Every problem comes with its fix, and any
//! problem makes the exit code non-zero.

use super::{dns_service, files, load_config, NodePaths};
use crate::config::{DnsMode, ModeKind, PluginConfig};
use crate::dns::domains::{self, DomainsFile};
use crate::dns::query::Answer;
use crate::dns::records::RecordStore;
use crate::mode::docker::engine::PortMapping;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

#[derive(Debug, Default)]
pub struct Status {
    /// (part, healthy, detail)
    pub checks: Vec<(&'static str, bool, String)>,
    pub pods: Vec<PodRow>,
    /// (what is wrong, how to fix it)
    pub problems: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct PodRow {
    pub namespace: String,
    pub pod: String,
    pub address: Option<Ipv4Addr>,
    pub names: Vec<String>,
    pub record: bool,
    pub resolves: bool,
    /// The hostPorts Docker publishes for the pod's sandbox.
    pub ports: Vec<PortMapping>,
}

impl Status {
    pub fn check(&mut self, part: &'static str, result: Result<String, (String, String)>) -> bool {
        match result {
            Ok(detail) => {
                self.checks.push((part, true, detail));
                true
            }
            Err((problem, fix)) => {
                self.checks.push((part, false, problem.clone()));
                self.problems.push((problem, fix));
                false
            }
        }
    }

    pub fn healthy(&self) -> bool {
        self.problems.is_empty()
    }

    /// Whether `part` was checked and found fine.
    pub fn is_ok(&self, part: &str) -> bool {
        self.checks.iter().any(|(p, ok, _)| *p == part && *ok)
    }

    /// The required parts that are not fine (not checked counts as not fine); for callers
    /// such as a package's post-install check that care about some parts only.
    pub fn failing<'a>(&self, required: &[&'a str]) -> Vec<&'a str> {
        required.iter().copied().filter(|part| !self.is_ok(part)).collect()
    }

    pub fn to_json(&self) -> Value {
        let checks: BTreeMap<&str, Value> =
            self.checks.iter().map(|(part, ok, detail)| (*part, json!({"ok": ok, "detail": detail}))).collect();
        json!({
            "healthy": self.healthy(),
            "checks": checks,
            "pods": self.pods.iter().map(|p| json!({
                "namespace": p.namespace, "pod": p.pod,
                "ip": p.address.map(|a| a.to_string()), "names": p.names,
                "record": p.record, "resolves": p.resolves,
                "ports": p.ports.iter().map(|m| json!({
                    "hostIP": m.host_ip, "hostPort": m.host_port, "containerPort": m.container_port, "protocol": m.protocol,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "problems": self.problems.iter().map(|(what, fix)| json!({"problem": what, "fix": fix})).collect::<Vec<_>>(),
        })
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (part, ok, detail) in &self.checks {
            out.push_str(&format!("{part:<13} {:<7} {detail}\n", if *ok { "ok" } else { "PROBLEM" }));
        }
        out.push_str(&format!("pods          {}\n", self.pods.len()));
        if !self.pods.is_empty() {
            let ports: Vec<String> = self.pods.iter().map(|p| ports_text(&p.ports)).collect();
            let width = ports.iter().map(String::len).max().unwrap_or(0).max("PORTS".len());
            out.push_str(&format!(
                "  {:<12} {:<24} {:<15} {:<6} {:<8} {:<width$} NAMES\n",
                "NAMESPACE", "POD", "IP", "RECORD", "RESOLVES", "PORTS"
            ));
            for (p, ports) in self.pods.iter().zip(&ports) {
                out.push_str(&format!(
                    "  {:<12} {:<24} {:<15} {:<6} {:<8} {:<width$} {}\n",
                    p.namespace,
                    p.pod,
                    p.address.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
                    if p.record { "yes" } else { "no" },
                    if p.resolves { "yes" } else { "no" },
                    ports,
                    p.names.join(" ")
                ));
            }
        }
        if self.problems.is_empty() {
            out.push_str("healthy\n");
        } else {
            out.push_str(&format!("{} problem(s):\n", self.problems.len()));
            for (what, fix) in &self.problems {
                out.push_str(&format!("  - {what}\n    fix: {fix}\n"));
            }
        }
        out
    }
}

pub fn run(paths: &NodePaths) -> Status {
    let mut status = Status::default();
    let config = match load_config(&paths.config) {
        Ok((_, config)) => config,
        Err(e) => {
            status.check("config", Err((e, "install the conflist: smarter-cni setup --config <file>".into())));
            return status;
        }
    };
    status.check("config", Ok(format!("{} (network {}, {} mode)", paths.config.display(), config.network, config.mode.as_str())));
    check_conflist(paths, &mut status);
    check_loopback(paths, &mut status);
    check_activation(paths, &mut status);
    match config.mode {
        ModeKind::Docker => crate::plugin::block_on(crate::mode::docker::node::status(&config, &mut status)),
        ModeKind::Bridge => crate::mode::bridge::node::status(&config, &mut status),
    }
    // Without the network its addresses are not on this node: a probe would leave the host
    // through the default route.
    if status.is_ok("network") {
        check_node_dns(&config, paths, &mut status);
    } else {
        status.checks.push(("dns", false, "not checked: the pod network is not there".into()));
    }
    status
}

fn check_conflist(paths: &NodePaths, status: &mut Status) {
    let result = match files::cni_configs(&paths.conf_dir) {
        Ok(configs) => match configs.first() {
            Some(first) if *first == paths.config => Ok(format!("{} is first in {}", paths.config.display(), paths.conf_dir.display())),
            Some(first) => Err((
                format!("{} shadows {}: the runtime uses the first file by name", first.display(), paths.config.display()),
                format!("remove {} or rename ours to sort before it", first.display()),
            )),
            None => Err((format!("{} is not in {}", paths.config.display(), paths.conf_dir.display()), "run smarter-cni setup".into())),
        },
        Err(e) => Err((format!("cannot list {}: {e}", paths.conf_dir.display()), "run smarter-cni setup".into())),
    };
    status.check("conflist", result);
}

fn check_loopback(paths: &NodePaths, status: &mut Status) {
    let link = paths.bin_dir.join("loopback");
    let result = match std::fs::metadata(&link) {
        Ok(meta) if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0 => Ok(link.display().to_string()),
        Ok(_) => Err((format!("{} is not executable", link.display()), format!("chmod 755 {}", link.display()))),
        Err(e) => Err((format!("{} is missing ({e}): pods cannot start", link.display()), "run smarter-cni setup".into())),
    };
    status.check("loopback", result);
}

/// The activation record against the binary in place: which version the node runs, and
/// what became of the last upgrade (rolled back, cut off by a power cut).
fn check_activation(paths: &NodePaths, status: &mut Status) {
    use super::activate::{fingerprint, Record, State};
    let bin = paths.bin_dir.join("smarter-cni");
    let result = match Record::read(&paths.state_dir) {
        Ok(None) => Ok(format!("no activation record in {} (installed with the image)", paths.state_dir.display())),
        Ok(Some(record)) => {
            let in_place = fingerprint(&bin).ok();
            if record.state == State::Activating {
                // Not ready while an activation runs: the installer pod's probe waits for it.
                Err((record.summary(), "wait for the activation to finish (or, after a crash, run smarter-cni setup)".into()))
            } else if in_place.as_deref() == Some(record.fingerprint.as_str()) || record.fingerprint.is_empty() {
                Ok(record.summary())
            } else {
                Err((
                    format!("{} is not the binary on record ({}): installed without an activation, or one was cut off", bin.display(), record.summary()),
                    "run smarter-cni setup (it puts the recorded binary back), or install the release again".into(),
                ))
            }
        }
        Err(e) => Err((format!("cannot read the activation record: {e}"), format!("check {}", Record::path(&paths.state_dir).display()))),
    };
    status.check("activation", result);
}

/// The PORTS column: `8080->80/tcp,5353->53/udp`, or `-`. One word, so columns stay columns.
fn ports_text(ports: &[PortMapping]) -> String {
    if ports.is_empty() {
        return "-".into();
    }
    ports.iter().map(PortMapping::to_string).collect::<Vec<_>>().join(",")
}

pub fn split_pod(pod: Option<&str>) -> (String, String) {
    match pod.and_then(|p| p.split_once('/')) {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (String::new(), pod.unwrap_or("").to_string()),
    }
}

/// The names node DNS keeps on the node: the file must say what the records imply.
fn check_pod_domains(config: &PluginConfig, status: &mut Status) {
    let file = DomainsFile::new(&config.dns.domains_file, &config.dns.pid_file);
    let records = RecordStore::new(&config.dns.records_dir).list().unwrap_or_default();
    let expected: Vec<String> = domains::claims(&records, config.dns.domain.as_deref()).into_iter().collect();
    let result = match file.read() {
        Ok(claimed) if claimed == expected => Ok(format!(
            "answered on the node: names without a dot{}{}",
            if claimed.is_empty() { "" } else { ", " },
            claimed.join(", ")
        )),
        Ok(claimed) => Err((
            format!("{} lists {claimed:?}, but the pods' records need {expected:?}", file.path().display()),
            "run smarter-cni setup (rewrites it and tells node DNS)".to_string(),
        )),
        Err(e) => Err((
            format!("cannot read {}: {e}; pod names may be forwarded upstream", file.path().display()),
            "run smarter-cni setup".to_string(),
        )),
    };
    status.check("dns-domains", result);
}

/// What in dnsmasq's configuration disagrees with the conflist, if anything.
fn dnsmasq_drift(config: &PluginConfig, settings: &files::DnsmasqSettings) -> Option<String> {
    let mut drift = Vec::new();
    let mut want = |key: &str, have: &[String], wanted: String| {
        if !have.contains(&wanted) {
            drift.push(format!("{key} is {have:?}, the conflist wants {wanted:?}"));
        }
    };
    want("listen-address", &settings.listen_addresses, config.dns.address.to_string());
    want("hostsdir", &settings.hostsdirs, config.dns.records_dir.display().to_string());
    want("servers-file", &settings.servers_files, config.dns.domains_file.display().to_string());
    want("pid-file", &settings.pid_files, config.dns.pid_file.display().to_string());
    if !settings.local_unqualified {
        drift.push("local=// is missing (names without a dot would be forwarded upstream)".to_string());
    }
    (!drift.is_empty()).then(|| drift.join("; "))
}

fn check_node_dns(config: &PluginConfig, paths: &NodePaths, status: &mut Status) {
    if config.dns.mode == DnsMode::Host {
        let records = &config.dns.records_dir;
        let result = match files::first_unreadable_for_others(records) {
            None => Ok(format!("{} readable by dnsmasq", records.display())),
            Some(folder) => Err((
                format!("dnsmasq cannot read the DNS records: {} is missing or not readable by other users", folder.display()),
                format!("chmod 755 {} (or run smarter-cni setup)", folder.display()),
            )),
        };
        status.check("dns-records", result);
        if let Ok(settings) = files::read_dnsmasq_settings(&paths.dnsmasq_config) {
            let result = match dnsmasq_drift(config, &settings) {
                Some(drift) => Err((
                    format!("{} does not match the conflist: {drift}", paths.dnsmasq_config.display()),
                    format!("edit {} to match, then systemctl restart smarter-cni-dns", paths.dnsmasq_config.display()),
                )),
                None => Ok(format!("{} matches the conflist", paths.dnsmasq_config.display())),
            };
            status.check("dns-config", result);
        }
        check_pod_domains(config, status);
    }
    let answering = dns_service::is_answering(config).map(|()| format!("{} mode, answering at {}:53", config.dns.mode.as_str(), config.dns.address));
    let fix = match config.dns.mode {
        DnsMode::Host => "systemctl restart smarter-cni-dns (and see journalctl -u smarter-cni-dns)",
        DnsMode::Container => "run smarter-cni setup (restarts the DNS container)",
    };
    if !status.check("dns", answering.map_err(|e| (e, fix.to_string()))) {
        return;
    }
    let mut problems = Vec::new();
    for row in &mut status.pods {
        let (Some(address), Some(name)) = (row.address, row.names.first()) else { continue };
        row.resolves = matches!(dns_service::ask(config, name), Ok(Answer::Addresses(found)) if found.contains(&address));
        if config.dns.mode == DnsMode::Host && !row.record {
            problems.push((
                format!("pod {}/{} has no DNS record", row.namespace, row.pod),
                "delete the pod so the runtime attaches it again".to_string(),
            ));
        } else if !row.resolves {
            problems.push((
                format!("node DNS does not resolve {name} to {address}"),
                format!("check {} and restart node DNS", config.dns.records_dir.display()),
            ));
        }
    }
    status.problems.extend(problems);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pod: &str, ports: Vec<PortMapping>) -> PodRow {
        PodRow {
            namespace: "default".into(),
            pod: pod.into(),
            address: Some(Ipv4Addr::new(172, 38, 0, 2)),
            names: vec![pod.into()],
            record: true,
            resolves: true,
            ports,
        }
    }

    #[test]
    fn each_pod_lists_its_host_ports_in_the_table_and_the_json() {
        let dns = PortMapping { host_port: 53, protocol: "udp".into(), host_ip: String::new(), container_port: 5353 };
        let web = PortMapping { host_port: 8080, protocol: "tcp".into(), host_ip: "192.0.2.7".into(), container_port: 80 };
        let status = Status { pods: vec![row("gw-dns", vec![dns, web]), row("plain", Vec::new())], ..Status::default() };
        let text = status.to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].contains(" PORTS ") && lines[1].ends_with(" NAMES"), "{text}");
        assert!(lines[2].contains(" 53->5353/udp,192.0.2.7:8080->80/tcp gw-dns"), "{text}");
        assert!(lines[3].contains(" -    "), "{text}");
        assert_eq!(lines[2].find("gw-dns"), lines[3].find("plain"), "NAMES stays a column:\n{text}");

        let json = status.to_json();
        assert_eq!(
            json["pods"][0]["ports"],
            json!([
                {"hostIP": "", "hostPort": 53, "containerPort": 5353, "protocol": "udp"},
                {"hostIP": "192.0.2.7", "hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            ])
        );
        assert_eq!(json["pods"][1]["ports"], json!([]));
    }
}

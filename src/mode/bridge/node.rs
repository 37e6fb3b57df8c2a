//! Bridge mode's part of the node commands: `setup` makes the bridge, turns forwarding on,
//! loads the NAT base ruleset and reclaims the leases of pods that are gone (after a
//! reboot: all of them); `status` shows the same and the pods by their leases.

use super::{leases, link, nat, nat_net};
use crate::config::PluginConfig;
use crate::dns::records::{Record, RecordStore};
use crate::mode::docker::engine::PortMapping as ShownPort;
use crate::node::setup::{Level, Report};
use crate::node::status::{split_pod, PodRow, Status};

pub fn setup(config: &PluginConfig, report: &mut Report) {
    let bridge = &config.bridge.name;
    let address = format!("{}/{}", config.gateway, config.subnet.prefix_len);
    match link::ensure_bridge(bridge, config.gateway, config.subnet.prefix_len) {
        Ok(false) => report.add(Level::Ok, format!("bridge {bridge} {address}")),
        Ok(true) => report.add(Level::Changed, format!("bridge {bridge} {address} (created or repaired)")),
        Err(e) => return report.add(Level::Error, format!("cannot set up bridge {bridge} {address}: {e}")),
    }
    let net = match nat_net(config) {
        Ok(net) => net,
        Err(e) => return report.add(Level::Error, e.msg),
    };
    match forwarding_on(config) {
        Ok(true) => report.add(Level::Ok, "IPv4 forwarding on"),
        _ => match nat::ensure_forwarding(&net) {
            Ok(()) => report.add(Level::Changed, format!("turned IPv4 forwarding on (ip_forward, route_localnet on {bridge})")),
            Err(e) => report.add(Level::Error, format!("cannot turn IPv4 forwarding on: {e}; pods will have no egress")),
        },
    }
    match iptables_forward(bridge, true) {
        Ok(ForwardFilter::Open) => {}
        Ok(ForwardFilter::Accepted) => report.add(Level::Ok, format!("iptables FORWARD (policy DROP) accepts {bridge}'s traffic")),
        Ok(ForwardFilter::Missing) => {
            report.add(Level::Changed, format!("iptables FORWARD has policy DROP (Docker?): accepted {bridge}'s traffic"))
        }
        Err(e) => report.add(Level::Error, format!("iptables FORWARD has policy DROP and accepting {bridge}'s traffic failed: {e}")),
    }
    let already = nat::check_base_ruleset(&net).is_ok();
    match nat::load_base_ruleset(&net) {
        Ok(()) if already => report.add(Level::Ok, format!("NAT rules for {} (masquerade, hostPorts) reloaded", config.subnet)),
        Ok(()) => report.add(Level::Changed, format!("loaded NAT rules for {} (masquerade, hostPorts)", config.subnet)),
        // The installer pod has no nft: the table that the node's setup loaded stays.
        Err(e) if already && e.kind() == std::io::ErrorKind::NotFound => {
            report.add(Level::Ok, format!("NAT rules for {} are loaded (no nft here to reload them: kept)", config.subnet))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => report.add(
            Level::Error,
            "cannot load the NAT rules: no nft here (the installer image has none): install nftables on the node and run              smarter-cni setup there (smarter-cni-setup.service does at boot)",
        ),
        Err(e) => report.add(Level::Error, format!("cannot load the NAT rules: {e}; is nftables (nft) installed?")),
    }
    let store = leases(config);
    let live = |lease: &super::ipam::Lease| link::link_exists(&link::host_veth_name(&lease.key.container_id, &lease.key.ifname)).unwrap_or(true);
    match store.reclaim(live) {
        Ok(freed) if freed.is_empty() => report.add(Level::Ok, format!("address leases {}", config.bridge.leases_dir.display())),
        Ok(freed) => {
            let records = RecordStore::new(&config.dns.records_dir);
            for lease in &freed {
                let _ = records.remove(&lease.key.container_id);
            }
            report.add(Level::Changed, format!("reclaimed {} address lease(s) of pods that are gone", freed.len()))
        }
        Err(e) => report.add(Level::Error, format!("cannot reclaim address leases in {}: {e}", config.bridge.leases_dir.display())),
    }
}

/// `ip_forward` (egress, hostPorts from other hosts) and the bridge's `route_localnet`
/// (hostPorts on 127.0.0.1) are both on.
fn forwarding_on(config: &PluginConfig) -> std::io::Result<bool> {
    let on = |path: String| std::fs::read_to_string(path).map(|v| v.trim() == "1");
    Ok(on("/proc/sys/net/ipv4/ip_forward".into())? && on(format!("/proc/sys/net/ipv4/conf/{}/route_localnet", config.bridge.name))?)
}

/// What the iptables FORWARD chain does to the pods' traffic.
#[derive(Debug, PartialEq, Eq)]
enum ForwardFilter {
    /// No iptables, or a policy that lets traffic through.
    Open,
    /// Policy DROP, with smarter-cni's accept rules for the bridge in place.
    Accepted,
    /// Policy DROP and no accept rules (before `fix` adds them).
    Missing,
}

/// A DROP policy in iptables' FORWARD chain (Docker sets one) drops the pods' routed traffic,
/// and with br_netfilter even pod-to-pod frames on the bridge; an accept in smarter-cni's own
/// nftables table cannot override another table's drop. So, like the reference `firewall`
/// plugin, accept traffic from and to the bridge there. Node command only (runs `iptables`).
fn iptables_forward(bridge: &str, fix: bool) -> Result<ForwardFilter, String> {
    let run = |args: &[&str]| std::process::Command::new("iptables").args(args).output();
    let listing = match run(&["-w", "-S", "FORWARD"]) {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        // No iptables (or no such table): nothing drops what nftables lets through.
        _ => return Ok(ForwardFilter::Open),
    };
    if !listing.lines().any(|l| l.trim() == "-P FORWARD DROP") {
        return Ok(ForwardFilter::Open);
    }
    let rules = [["-i", bridge, "-j", "ACCEPT"], ["-o", bridge, "-j", "ACCEPT"]];
    let present = |rule: &[&str; 4]| listing.lines().any(|l| l.trim() == format!("-A FORWARD {}", rule.join(" ")));
    if rules.iter().all(present) {
        return Ok(ForwardFilter::Accepted);
    }
    if !fix {
        return Ok(ForwardFilter::Missing);
    }
    for rule in rules.iter().filter(|r| !present(r)) {
        let mut args = vec!["-w", "-I", "FORWARD", "1"];
        args.extend_from_slice(rule);
        match run(&args) {
            Ok(out) if out.status.success() => {}
            Ok(out) => return Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(ForwardFilter::Missing)
}

pub fn status(config: &PluginConfig, status: &mut Status) {
    let bridge = &config.bridge.name;
    let net = match nat_net(config) {
        Ok(net) => net,
        Err(e) => {
            status.check("network", Err((e.msg, "fix the conflist".into())));
            return;
        }
    };
    let result = link::check_bridge(bridge, config.gateway, config.subnet.prefix_len)
        .map(|()| format!("bridge {bridge} {}/{} ({})", config.gateway, config.subnet.prefix_len, config.subnet))
        .map_err(|e| (e, "run smarter-cni setup".to_string()));
    status.check("network", result);
    let forwarding = match forwarding_on(config) {
        Ok(true) if iptables_forward(bridge, false) == Ok(ForwardFilter::Missing) => Err((
            format!("iptables FORWARD has policy DROP (Docker?) and does not accept {bridge}'s traffic: pods cannot reach each other or beyond"),
            "run smarter-cni setup".to_string(),
        )),
        Ok(true) => Ok("IPv4 forwarding on".to_string()),
        Ok(false) => Err((
            format!("IPv4 forwarding (ip_forward, or route_localnet on {bridge}) is off: pods cannot reach beyond the node"),
            "run smarter-cni setup".to_string(),
        )),
        Err(e) => Err((format!("cannot read the forwarding settings: {e}"), "run smarter-cni setup (it makes the bridge)".to_string())),
    };
    status.check("forwarding", forwarding);
    let rules = nat::check_base_ruleset(&net)
        .map(|()| format!("masquerade of {} and hostPort maps loaded", config.subnet))
        .map_err(|e| (e, "run smarter-cni setup (loads the rules with nft)".to_string()));
    status.check("nat", rules);
    let store = leases(config);
    let leases = match store.list() {
        Ok(leases) => leases,
        Err(e) => {
            status.check("leases", Err((format!("cannot read {}: {e}", config.bridge.leases_dir.display()), "check the folder".into())));
            return;
        }
    };
    let ports = nat::list_port_mappings(&net).unwrap_or_default();
    let records: Vec<Record> = RecordStore::new(&config.dns.records_dir).list().unwrap_or_default();
    let mut stale = Vec::new();
    for lease in &leases {
        let host = link::host_veth_name(&lease.key.container_id, &lease.key.ifname);
        if !link::link_exists(&host).unwrap_or(true) {
            stale.push(format!("{} ({})", lease.address, crate::plugin::short(&lease.key.container_id)));
        }
        let record = records.iter().find(|r| r.attachment_id == lease.key.container_id);
        let (namespace, pod) = split_pod(record.and_then(|r| r.pod.as_deref()).or(lease.pod.as_deref()));
        status.pods.push(PodRow {
            namespace,
            pod,
            address: Some(lease.address),
            names: record.map(|r| r.names.clone()).unwrap_or_default(),
            record: record.is_some(),
            resolves: false,
            ports: ports
                .iter()
                .filter(|(_, _, owner)| owner.attachment_id == lease.key.container_id)
                .map(|(m, _, _)| ShownPort {
                    host_port: m.host_port,
                    protocol: m.protocol.to_string(),
                    host_ip: m.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                    container_port: m.container_port,
                })
                .collect(),
        });
    }
    let unreadable = store.unreadable().unwrap_or_default();
    let result = if !stale.is_empty() {
        Err((
            format!("{} lease(s) of pods whose interface is gone: {}", stale.len(), stale.join(", ")),
            "run smarter-cni setup (reclaims them)".to_string(),
        ))
    } else if !unreadable.is_empty() {
        Err((
            format!("{} lease file(s) of an unknown format (a newer smarter-cni?): {unreadable:?}", unreadable.len()),
            "upgrade smarter-cni, or remove them once no pod uses their addresses".to_string(),
        ))
    } else {
        Ok(format!("{} lease(s) in {}, each with its interface", leases.len(), config.bridge.leases_dir.display()))
    };
    status.check("leases", result);
}

//! smarter-cni's own configuration keys (the plugin entry of the conflist), validated
//! into a form the plugin and the node commands share. Every key is optional; the seed's
//! `{"cniVersion":"0.2.0","name":"mynet","type":"smarter-cni"}` is a complete config.

use crate::cni::{CniError, NetConf};
use crate::dns::names::is_dns_name;
use crate::ipv4::Ipv4Net;
use serde::Deserialize;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_SUBNET: &str = "172.38.0.0/16";
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";
pub const DEFAULT_STATE_ROOT: &str = "/run/smarter-cni";
pub const DEFAULT_DNS_IMAGE: &str = "smarter-cni/dnsmasq:latest";
const DEFAULT_TIMEOUT_SECONDS: u64 = 30;
/// Where bridge mode keeps its address leases: on disk, so a lease outlives a crash of the
/// plugin; `setup` reclaims those of pods that are gone after a reboot.
pub const DEFAULT_LEASES_ROOT: &str = "/var/lib/smarter-cni";
/// k3s's embedded containerd keeps one folder per pod sandbox here (its CRI plugin's root).
pub use crate::mode::bridge::hostnames::DEFAULT_SANDBOX_DIR;

/// Who owns the pod network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeKind {
    /// Docker does (`k3s agent --docker`): pods join a Docker user network.
    Docker,
    /// The plugin does (containerd and other libcni runtimes): a Linux bridge of its own.
    Bridge,
}

impl ModeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModeKind::Docker => "docker",
            ModeKind::Bridge => "bridge",
        }
    }
}

/// Bridge mode's own keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// The Linux bridge pods' veths join; it carries the gateway address.
    pub name: String,
    /// Address leases, one file per attachment.
    pub leases_dir: PathBuf,
    /// The runtime's per-sandbox folders, where containerd writes each pod's `hostname`.
    pub sandbox_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsMode {
    /// dnsmasq runs on the node as a system service, serving record files.
    Host,
    /// dnsmasq runs in a container on the network at a reserved address.
    Container,
}

impl DnsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DnsMode::Host => "host",
            DnsMode::Container => "container",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    pub mode: DnsMode,
    /// Where node DNS answers: the gateway in host mode, a reserved address in container mode.
    pub address: Ipv4Addr,
    pub domain: Option<String>,
    pub records_dir: PathBuf,
    /// The namespaces and names node DNS answers itself (dnsmasq `servers-file=`).
    pub domains_file: PathBuf,
    /// dnsmasq's pid file (`pid-file=`): where the plugin finds it to make it re-read
    /// `domains_file`.
    pub pid_file: PathBuf,
    pub image: String,
    pub image_archive: Option<PathBuf>,
    pub container_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    pub mode: ModeKind,
    /// The CNI network name (the configuration's "name").
    pub cni_network: String,
    /// The Docker network pods join.
    pub network: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// Where Docker hands out pod addresses; addresses outside it stay reserved.
    pub ip_range: Option<Ipv4Net>,
    /// Path of the engine's unix socket.
    pub docker_socket: PathBuf,
    pub timeout: Duration,
    pub debug: bool,
    pub dns: DnsConfig,
    pub bridge: BridgeConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    mode: Option<String>,
    network: Option<String>,
    bridge: Option<String>,
    leases_dir: Option<String>,
    sandbox_dir: Option<String>,
    subnet: Option<String>,
    gateway: Option<String>,
    ip_range: Option<String>,
    docker_host: Option<String>,
    timeout_seconds: Option<u64>,
    debug: Option<bool>,
    dns: Option<RawDns>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDns {
    mode: Option<String>,
    address: Option<String>,
    domain: Option<String>,
    records_dir: Option<String>,
    domains_file: Option<String>,
    pid_file: Option<String>,
    image: Option<String>,
    image_archive: Option<String>,
    container_name: Option<String>,
}

fn invalid(msg: String) -> CniError {
    CniError::invalid_config(msg)
}

/// Docker's own rule for network and container names: a container ID's characters, at
/// most 128 of them.
pub fn is_docker_name(text: &str) -> bool {
    text.len() <= 128 && crate::cni::env::is_container_id(text)
}

/// A name the kernel accepts for a link, limited to characters safe in messages and paths.
pub fn is_interface_name(text: &str) -> bool {
    (1..=15).contains(&text.len())
        && text != "."
        && text != ".."
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn absolute_path(key: &str, text: &str) -> Result<PathBuf, CniError> {
    let path = PathBuf::from(text);
    let clean = path.is_absolute() && path.components().all(|c| !matches!(c, std::path::Component::ParentDir));
    if !clean {
        return Err(invalid(format!("\"{key}\": {text:?} must be an absolute path without '..'")));
    }
    Ok(path)
}

impl PluginConfig {
    pub fn from_netconf(conf: &NetConf) -> Result<PluginConfig, CniError> {
        let raw: RawConfig = serde_json::from_value(conf.raw.clone())
            .map_err(|e| invalid(format!("smarter-cni configuration keys are malformed: {e}")))?;
        let mode = match raw.mode.as_deref().unwrap_or("docker") {
            "docker" => ModeKind::Docker,
            "bridge" => ModeKind::Bridge,
            other => return Err(invalid(format!("\"mode\": {other:?} is not \"docker\" or \"bridge\""))),
        };
        let network = raw.network.unwrap_or_else(|| conf.name.clone());
        if !is_docker_name(&network) {
            return Err(invalid(format!(
                "Docker network name {network:?} is invalid: use letters, digits, '_', '.', '-' (set \"network\")"
            )));
        }
        let subnet: Ipv4Net = raw.subnet.as_deref().unwrap_or(DEFAULT_SUBNET).parse().map_err(|e| invalid(format!("\"subnet\": {e}")))?;
        if subnet.prefix_len > 30 {
            return Err(invalid(format!("\"subnet\": {subnet} is too small for pods; use /30 or larger")));
        }
        let gateway = match raw.gateway.as_deref() {
            Some(text) => text.parse().map_err(|_| invalid(format!("\"gateway\": {text:?} is not an IPv4 address")))?,
            None => subnet.nth(1),
        };
        if !subnet.is_host(gateway) {
            return Err(invalid(format!("\"gateway\": {gateway} is not a host address of subnet {subnet}")));
        }
        let docker_host = raw.docker_host.as_deref().unwrap_or(DEFAULT_DOCKER_HOST);
        let socket = docker_host.strip_prefix("unix://").unwrap_or(docker_host);
        if docker_host.contains("://") && !docker_host.starts_with("unix://") {
            return Err(invalid(format!("\"dockerHost\": {docker_host:?} is not supported; use unix:///path/to/docker.sock")));
        }
        let docker_socket = absolute_path("dockerHost", socket)?;
        let raw_dns = raw.dns.unwrap_or_default();
        let dns_mode = match raw_dns.mode.as_deref().unwrap_or("host") {
            "host" => DnsMode::Host,
            "container" => DnsMode::Container,
            other => return Err(invalid(format!("\"dns.mode\": {other:?} is not \"host\" or \"container\""))),
        };
        if mode == ModeKind::Bridge && dns_mode == DnsMode::Container {
            return Err(invalid(
                "\"dns.mode\": \"container\" needs Docker; in bridge mode node DNS runs on the node (\"host\")".to_string(),
            ));
        }
        let dns_address = match raw_dns.address.as_deref() {
            Some(text) => text.parse().map_err(|_| invalid(format!("\"dns.address\": {text:?} is not an IPv4 address")))?,
            None if dns_mode == DnsMode::Host => gateway,
            None => first_free_after(subnet, gateway),
        };
        if !subnet.is_host(dns_address) {
            return Err(invalid(format!("\"dns.address\": {dns_address} is not a host address of subnet {subnet}")));
        }
        if dns_mode == DnsMode::Container && dns_address == gateway {
            return Err(invalid(format!(
                "\"dns.address\": {dns_address} is the gateway; in container mode the DNS container needs its own address"
            )));
        }
        let ip_range = match raw.ip_range.as_deref() {
            Some(text) => Some(text.parse::<Ipv4Net>().map_err(|e| invalid(format!("\"ipRange\": {e}")))?),
            // Container mode reserves the DNS address by keeping pods in the upper half.
            None if dns_mode == DnsMode::Container => subnet.upper_half(),
            None => None,
        };
        if let Some(range) = ip_range {
            if !subnet.covers(range) {
                return Err(invalid(format!("\"ipRange\": {range} is not inside subnet {subnet}")));
            }
            if dns_mode == DnsMode::Container && range.contains(dns_address) {
                return Err(invalid(format!(
                    "\"dns.address\": {dns_address} is inside \"ipRange\" {range}, so a pod could take it; pick an address outside the range"
                )));
            }
        }
        let domain = match raw_dns.domain {
            Some(d) if is_dns_name(&d) => Some(d),
            Some(d) => return Err(invalid(format!("\"dns.domain\": {d:?} is not a valid lower-case DNS name"))),
            None => None,
        };
        let records_dir = match raw_dns.records_dir.as_deref() {
            Some(text) => absolute_path("dns.recordsDir", text)?,
            None => PathBuf::from(DEFAULT_STATE_ROOT).join(&network).join("hosts"),
        };
        let state_dir = PathBuf::from(DEFAULT_STATE_ROOT).join(&network);
        let domains_file = match raw_dns.domains_file.as_deref() {
            Some(text) => absolute_path("dns.domainsFile", text)?,
            None => state_dir.join("domains"),
        };
        let pid_file = match raw_dns.pid_file.as_deref() {
            Some(text) => absolute_path("dns.pidFile", text)?,
            None => state_dir.join("dnsmasq.pid"),
        };
        let container_name = raw_dns.container_name.unwrap_or_else(|| format!("{network}-dns"));
        if !is_docker_name(&container_name) {
            return Err(invalid(format!("\"dns.containerName\": {container_name:?} is not a valid Docker container name")));
        }
        let image_archive = raw_dns.image_archive.as_deref().map(|p| absolute_path("dns.imageArchive", p)).transpose()?;
        let timeout = Duration::from_secs(raw.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS).clamp(1, 600));
        let bridge_name = raw.bridge.unwrap_or_else(|| network.clone());
        // Only bridge mode makes a link of that name; Docker names its own bridges.
        if mode == ModeKind::Bridge && !is_interface_name(&bridge_name) {
            return Err(invalid(format!(
                "bridge name {bridge_name:?} is not a Linux interface name (1 to 15 letters, digits, '_', '.', '-'); set \"bridge\""
            )));
        }
        let bridge = BridgeConfig {
            name: bridge_name,
            leases_dir: match raw.leases_dir.as_deref() {
                Some(text) => absolute_path("leasesDir", text)?,
                None => PathBuf::from(DEFAULT_LEASES_ROOT).join(&network).join("leases"),
            },
            sandbox_dir: absolute_path("sandboxDir", raw.sandbox_dir.as_deref().unwrap_or(DEFAULT_SANDBOX_DIR))?,
        };
        Ok(PluginConfig {
            mode,
            bridge,
            cni_network: conf.name.clone(),
            network,
            subnet,
            gateway,
            ip_range,
            docker_socket,
            timeout,
            debug: raw.debug.unwrap_or(false),
            dns: DnsConfig {
                mode: dns_mode,
                address: dns_address,
                domain,
                records_dir,
                domains_file,
                pid_file,
                image: raw_dns.image.unwrap_or_else(|| DEFAULT_DNS_IMAGE.to_string()),
                image_archive,
                container_name,
            },
        })
    }

    /// Addresses that must never go to a pod, besides the gateway (Docker reserves it; bridge
    /// mode's address store skips it itself).
    pub fn reserved_addresses(&self) -> Vec<Ipv4Addr> {
        match self.dns.mode {
            DnsMode::Container => vec![self.dns.address],
            DnsMode::Host => Vec::new(),
        }
    }
}

fn first_free_after(subnet: Ipv4Net, gateway: Ipv4Addr) -> Ipv4Addr {
    let candidate = subnet.nth(2);
    if candidate == gateway {
        subnet.nth(3)
    } else {
        candidate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Result<PluginConfig, CniError> {
        PluginConfig::from_netconf(&NetConf::parse(json.as_bytes()).unwrap())
    }

    #[test]
    fn seed_config_gets_all_defaults() {
        let c = config(r#"{"cniVersion":"0.2.0","name":"mynet","type":"smarter-cni","debug":true}"#).unwrap();
        assert_eq!(c.network, "mynet");
        assert_eq!(c.subnet.to_string(), "172.38.0.0/16");
        assert_eq!(c.gateway, Ipv4Addr::new(172, 38, 0, 1));
        assert_eq!(c.docker_socket, PathBuf::from("/var/run/docker.sock"));
        assert_eq!(c.dns.mode, DnsMode::Host);
        assert_eq!(c.dns.address, c.gateway);
        assert_eq!(c.dns.records_dir, PathBuf::from("/run/smarter-cni/mynet/hosts"));
        assert_eq!(c.ip_range, None);
        assert!(c.debug);
    }

    #[test]
    fn bridge_mode_defaults() {
        let c = config(r#"{"cniVersion":"1.1.0","name":"mynet","type":"smarter-cni","mode":"bridge"}"#).unwrap();
        assert_eq!(c.mode, ModeKind::Bridge);
        assert_eq!(c.bridge.name, "mynet");
        assert_eq!(c.bridge.leases_dir, PathBuf::from("/var/lib/smarter-cni/mynet/leases"));
        assert_eq!(c.bridge.sandbox_dir, PathBuf::from(DEFAULT_SANDBOX_DIR));
        assert_eq!(c.dns.address, c.gateway);
        let docker = config(r#"{"cniVersion":"0.2.0","name":"mynet","type":"smarter-cni"}"#).unwrap();
        assert_eq!(docker.mode, ModeKind::Docker);
    }

    #[test]
    fn full_config() {
        let c = config(
            r#"{"cniVersion":"1.0.0","name":"k8s","type":"smarter-cni","network":"podnet",
                "subnet":"10.50.0.0/24","gateway":"10.50.0.254","dockerHost":"unix:///run/d.sock",
                "dns":{"mode":"container","domain":"gw.local"}}"#,
        )
        .unwrap();
        assert_eq!(c.network, "podnet");
        assert_eq!(c.cni_network, "k8s");
        assert_eq!(c.docker_socket, PathBuf::from("/run/d.sock"));
        assert_eq!(c.dns.address, Ipv4Addr::new(10, 50, 0, 2));
        assert_eq!(c.ip_range.unwrap().to_string(), "10.50.0.128/25");
        assert_eq!(c.reserved_addresses(), vec![Ipv4Addr::new(10, 50, 0, 2)]);
        assert_eq!(c.dns.container_name, "podnet-dns");
    }

    #[test]
    fn invalid_values_are_code_7_and_say_what_to_do() {
        let cases = [
            (r#""subnet":"172.38.0.1/16""#, "did you mean 172.38.0.0/16"),
            (r#""subnet":"nonsense""#, "subnet"),
            (r#""gateway":"10.0.0.1""#, "not a host address"),
            (r#""network":"../x""#, "network name"),
            (r#""dockerHost":"tcp://1.2.3.4:2375""#, "unix://"),
            (r#""dockerHost":"relative.sock""#, "absolute path"),
            (r#""dns":{"mode":"cloud"}"#, "dns.mode"),
            (r#""dns":{"mode":"container","address":"172.38.200.1"}"#, "inside \"ipRange\""),
            (r#""dns":{"recordsDir":"/run/../etc"}"#, "without '..'"),
            (r#""dns":{"domain":"Bad_Domain"}"#, "dns.domain"),
            (r#""ipRange":"10.0.0.0/24""#, "not inside subnet"),
            (r#""subnet":17"#, "malformed"),
            (r#""mode":"macvlan""#, "\"mode\""),
            (r#""mode":"bridge","dns":{"mode":"container"}"#, "needs Docker"),
            (r#""mode":"bridge","bridge":"a-very-long-bridge-name""#, "interface name"),
            (r#""mode":"bridge","bridge":"../x""#, "interface name"),
            (r#""mode":"bridge","leasesDir":"leases""#, "absolute path"),
            (r#""mode":"bridge","sandboxDir":"/a/../b""#, "without '..'"),
        ];
        for (fragment, expected) in cases {
            let err = config(&format!(r#"{{"cniVersion":"1.0.0","name":"mynet",{fragment}}}"#)).unwrap_err();
            assert_eq!(err.code, 7, "{fragment}");
            assert!(err.msg.contains(expected), "{fragment}: {}", err.msg);
        }
    }
}

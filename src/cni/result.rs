//! ADD results, written in the shape of the configuration's spec version.

use super::version::SpecVersion;
use serde_json::{json, Value};
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    pub nameservers: Vec<String>,
    pub domain: Option<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

/// One interface with one IPv4 address and a default route: what this plugin and
/// loopback hand back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceResult {
    pub ifname: String,
    pub mac: Option<String>,
    /// The network namespace path; empty for host-side interfaces.
    pub sandbox: String,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub default_route: bool,
    pub dns: Dns,
}

impl InterfaceResult {
    /// The result document for `cni_version` (already validated as supported).
    pub fn to_json(&self, cni_version: &str, version: SpecVersion) -> Value {
        let cidr = format!("{}/{}", self.address, self.prefix_len);
        let routes: Vec<Value> = if self.default_route {
            match self.gateway {
                Some(gw) => vec![json!({"dst": "0.0.0.0/0", "gw": gw.to_string()})],
                None => vec![json!({"dst": "0.0.0.0/0"})],
            }
        } else {
            Vec::new()
        };
        let mut doc = json!({ "cniVersion": cni_version });
        if version.has_legacy_result() {
            let mut ip4 = json!({ "ip": cidr });
            if let Some(gw) = self.gateway {
                ip4["gateway"] = json!(gw.to_string());
            }
            if !routes.is_empty() {
                ip4["routes"] = json!(routes);
            }
            doc["ip4"] = ip4;
        } else {
            let mut interface = json!({ "name": self.ifname });
            if let Some(mac) = &self.mac {
                interface["mac"] = json!(mac);
            }
            if !self.sandbox.is_empty() {
                interface["sandbox"] = json!(self.sandbox);
            }
            let mut ip = json!({ "address": cidr, "interface": 0 });
            if let Some(gw) = self.gateway {
                ip["gateway"] = json!(gw.to_string());
            }
            if version < SpecVersion::V1_0_0 {
                ip["version"] = json!("4");
            }
            doc["interfaces"] = json!([interface]);
            doc["ips"] = json!([ip]);
            if !routes.is_empty() {
                doc["routes"] = json!(routes);
            }
        }
        doc["dns"] = self.dns_json();
        doc
    }

    fn dns_json(&self) -> Value {
        let mut dns = json!({});
        if !self.dns.nameservers.is_empty() {
            dns["nameservers"] = json!(self.dns.nameservers);
        }
        if let Some(domain) = &self.dns.domain {
            dns["domain"] = json!(domain);
        }
        if !self.dns.search.is_empty() {
            dns["search"] = json!(self.dns.search);
        }
        if !self.dns.options.is_empty() {
            dns["options"] = json!(self.dns.options);
        }
        dns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> InterfaceResult {
        InterfaceResult {
            ifname: "eth0".into(),
            mac: Some("02:42:ac:26:00:03".into()),
            sandbox: "/proc/42/ns/net".into(),
            address: Ipv4Addr::new(172, 38, 0, 3),
            prefix_len: 16,
            gateway: Some(Ipv4Addr::new(172, 38, 0, 1)),
            default_route: true,
            dns: Dns { nameservers: vec!["127.0.0.11".into()], ..Dns::default() },
        }
    }

    #[test]
    fn current_result_shape() {
        let doc = sample().to_json("1.0.0", SpecVersion::V1_0_0);
        assert_eq!(doc["interfaces"][0]["name"], "eth0");
        assert_eq!(doc["interfaces"][0]["sandbox"], "/proc/42/ns/net");
        assert_eq!(doc["ips"][0]["address"], "172.38.0.3/16");
        assert_eq!(doc["ips"][0]["gateway"], "172.38.0.1");
        assert_eq!(doc["ips"][0]["interface"], 0);
        assert!(doc["ips"][0].get("version").is_none());
        assert_eq!(doc["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(doc["dns"]["nameservers"][0], "127.0.0.11");
    }

    #[test]
    fn v04_ips_carry_version() {
        let doc = sample().to_json("0.4.0", SpecVersion::V0_4_0);
        assert_eq!(doc["ips"][0]["version"], "4");
        assert_eq!(doc["cniVersion"], "0.4.0");
    }

    #[test]
    fn legacy_result_shape() {
        let doc = sample().to_json("0.2.0", SpecVersion(0, 2, 0));
        assert_eq!(doc["ip4"]["ip"], "172.38.0.3/16");
        assert_eq!(doc["ip4"]["gateway"], "172.38.0.1");
        assert_eq!(doc["ip4"]["routes"][0]["gw"], "172.38.0.1");
        assert!(doc.get("interfaces").is_none());
    }
}

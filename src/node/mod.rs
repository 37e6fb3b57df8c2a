//! Node commands, apart from the plugin path (so VERSION stays instant): `setup` prepares a
//! gateway, `status` diagnoses one.

pub mod activate;
pub mod dns_service;
pub mod files;
pub mod install;
pub mod setup;
pub mod status;

use crate::cni::NetConf;
use crate::config::PluginConfig;
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG: &str = "/etc/cni/net.d/10-smarter-cni.conflist";
pub const DEFAULT_BIN_DIR: &str = "/opt/cni/bin";
pub const DEFAULT_DNSMASQ_CONFIG: &str = "/etc/smarter-cni/dnsmasq.conf";

/// Paths the node commands work with; each has a flag.
#[derive(Debug, Clone)]
pub struct NodePaths {
    pub config: PathBuf,
    pub conf_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub dnsmasq_config: PathBuf,
    /// Kept binaries and the activation record (packages and the installer).
    pub state_dir: PathBuf,
}

impl NodePaths {
    /// Parses `--config`, `--conf-dir`, `--bin-dir`, `--dnsmasq-config`, `--state-dir`; returns
    /// the rest.
    pub fn from_args(args: &[String]) -> Result<(NodePaths, Vec<String>), String> {
        let mut paths = NodePaths {
            config: PathBuf::from(DEFAULT_CONFIG),
            conf_dir: PathBuf::new(),
            bin_dir: PathBuf::from(DEFAULT_BIN_DIR),
            dnsmasq_config: PathBuf::from(DEFAULT_DNSMASQ_CONFIG),
            state_dir: PathBuf::from(activate::DEFAULT_STATE_DIR),
        };
        let mut rest = Vec::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
                _ => (arg.as_str(), None),
            };
            let target = match flag {
                "--config" => &mut paths.config,
                "--conf-dir" => &mut paths.conf_dir,
                "--bin-dir" => &mut paths.bin_dir,
                "--dnsmasq-config" => &mut paths.dnsmasq_config,
                "--state-dir" => &mut paths.state_dir,
                _ => {
                    rest.push(arg.clone());
                    continue;
                }
            };
            let value = inline.or_else(|| iter.next().cloned()).ok_or_else(|| format!("{flag} needs a value"))?;
            *target = PathBuf::from(value);
        }
        if paths.conf_dir.as_os_str().is_empty() {
            paths.conf_dir = paths.config.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        }
        Ok((paths, rest))
    }
}

/// Reads a `.conflist` (taking the smarter-cni entry, with the list's version and name) or
/// a single-plugin `.conf`, exactly as a runtime would hand it to the plugin.
pub fn load_config(path: &Path) -> Result<(NetConf, PluginConfig), String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let doc: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
    let plugin_entry = match doc.get("plugins").and_then(|p| p.as_array()) {
        Some(plugins) => {
            let mut entry = plugins
                .iter()
                .find(|p| p.get("type").and_then(|t| t.as_str()) == Some("smarter-cni"))
                .cloned()
                .ok_or_else(|| format!("{} has no plugin of type \"smarter-cni\"", path.display()))?;
            for key in ["cniVersion", "name"] {
                if let Some(value) = doc.get(key) {
                    entry[key] = value.clone();
                }
            }
            entry
        }
        None => doc,
    };
    let conf = NetConf::parse(plugin_entry.to_string().as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    let config = PluginConfig::from_netconf(&conf).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((conf, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_conflist_loads_with_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/rootfs/etc/cni/net.d/10-smarter-cni.conflist");
        let (conf, config) = load_config(&path).unwrap();
        assert_eq!(conf.cni_version, "1.0.0");
        assert_eq!(config.network, "mynet");
        assert_eq!(config.gateway.to_string(), "172.38.0.1");
        assert_eq!(config.dns.records_dir, PathBuf::from("/run/smarter-cni/mynet/hosts"));
    }

    #[test]
    fn flags_with_and_without_equals() {
        let args: Vec<String> = ["--config=/tmp/x.conflist", "--bin-dir", "/b", "--json"].iter().map(|s| s.to_string()).collect();
        let (paths, rest) = NodePaths::from_args(&args).unwrap();
        assert_eq!(paths.config, PathBuf::from("/tmp/x.conflist"));
        assert_eq!(paths.conf_dir, PathBuf::from("/tmp"));
        assert_eq!(paths.bin_dir, PathBuf::from("/b"));
        assert_eq!(rest, vec!["--json"]);
        assert!(NodePaths::from_args(&["--bin-dir".to_string()]).is_err());
    }
}

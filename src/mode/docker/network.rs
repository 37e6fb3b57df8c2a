//! The pod network: what it must look like (from the configuration), and creating it
//! exactly once when many ADDs race on a fresh node.

use crate::cni::{code, CniError};
use crate::config::PluginConfig;
use crate::mode::docker::engine::{Engine, ErrorKind, Network, NetworkSpec};
use std::collections::HashMap;
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Label on networks this plugin created.
pub const MANAGED_LABEL: &str = "dev.smarter-cni.managed";

pub fn spec(config: &PluginConfig) -> NetworkSpec {
    NetworkSpec {
        name: config.network.clone(),
        subnet: config.subnet.to_string(),
        gateway: config.gateway.to_string(),
        ip_range: config.ip_range.map(|r| r.to_string()),
        labels: HashMap::from([(MANAGED_LABEL.to_string(), "true".to_string())]),
    }
}

/// What differs between an existing network and the configuration, with the fix.
pub fn mismatch(existing: &Network, config: &PluginConfig) -> Option<String> {
    let want = spec(config);
    let mut diffs = Vec::new();
    if existing.driver != "bridge" {
        diffs.push(format!("driver is {:?}, not \"bridge\"", existing.driver));
    }
    if existing.subnet.as_deref() != Some(want.subnet.as_str()) {
        diffs.push(format!("subnet is {}, configuration says {}", existing.subnet.as_deref().unwrap_or("unset"), want.subnet));
    }
    if existing.gateway.as_deref() != Some(want.gateway.as_str()) {
        diffs.push(format!("gateway is {}, configuration says {}", existing.gateway.as_deref().unwrap_or("unset"), want.gateway));
    }
    if want.ip_range.is_some() && existing.ip_range != want.ip_range {
        diffs.push(format!(
            "pod address range is {}, configuration needs {} (to keep reserved addresses from pods)",
            existing.ip_range.as_deref().unwrap_or("the whole subnet"),
            want.ip_range.as_deref().unwrap_or("")
        ));
    }
    if diffs.is_empty() {
        return None;
    }
    Some(format!(
        "Docker network {} does not match the configuration: {}. Either change the configuration to match, \
         or remove the network once no pod uses it (docker network rm {}) and run `smarter-cni setup`",
        existing.name,
        diffs.join("; "),
        existing.name
    ))
}

/// The network if it exists and matches; `None` if it does not exist; code 7 if it differs.
pub async fn inspect(engine: &Engine, config: &PluginConfig) -> Result<Option<Network>, CniError> {
    let existing = engine.network(&config.network).await.map_err(crate::mode::docker::engine_error)?;
    match existing {
        Some(net) => match mismatch(&net, config) {
            Some(problem) => Err(CniError::new(code::INVALID_NETWORK_CONFIG, problem)),
            None => Ok(Some(net)),
        },
        None => Ok(None),
    }
}

/// Usable for pods: matching, or absent (ADD creates it).
pub async fn verify(engine: &Engine, config: &PluginConfig) -> Result<(), CniError> {
    inspect(engine, config).await.map(|_| ())
}

/// Returns the network, creating it if missing. A node-wide lock serializes creation, and a
/// network that appeared meanwhile (another engine client) is accepted if it matches.
pub async fn ensure(engine: &Engine, config: &PluginConfig) -> Result<Network, CniError> {
    if let Some(net) = inspect(engine, config).await? {
        return Ok(net);
    }
    let _lock = NetworkLock::acquire(Path::new(crate::config::DEFAULT_STATE_ROOT), &config.network)?;
    if let Some(net) = inspect(engine, config).await? {
        return Ok(net);
    }
    if let Err(err) = engine.create_network(&spec(config)).await {
        // Someone outside our lock may have won the race; accept what they made if it matches.
        if let Some(net) = inspect(engine, config).await? {
            return Ok(net);
        }
        let code = if err.kind == ErrorKind::Unreachable { code::TRY_AGAIN_LATER } else { code::ENGINE_FAILURE };
        return Err(CniError::new(code, format!("cannot create Docker network {} ({})", config.network, config.subnet))
            .with_details(format!("{}; does another network overlap {}? (docker network ls)", err.message, config.subnet)));
    }
    inspect(engine, config).await?.ok_or_else(|| {
        CniError::new(code::ENGINE_FAILURE, format!("Docker network {} vanished right after it was created", config.network))
    })
}

/// An exclusive `flock` on a per-network file under /run, released on drop (or when the
/// process dies, so a crashed plugin never leaves the node locked).
struct NetworkLock {
    _file: File,
}

impl NetworkLock {
    fn acquire(state_root: &Path, network: &str) -> Result<NetworkLock, CniError> {
        let io_error = |what: &str, e: std::io::Error| CniError::io(format!("cannot {what} the lock for network {network}: {e}"));
        let lock_dir = lock_dir(state_root).map_err(|e| io_error("create the folder for", e))?;
        let path = lock_dir.join(format!("{network}.lock"));
        let file = OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(&path).map_err(|e| io_error("open", e))?;
        // SAFETY: flock on a descriptor we own; blocks until the holder releases it.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(io_error("take", std::io::Error::last_os_error()));
        }
        Ok(NetworkLock { _file: file })
    }
}

/// `<root>/locks`, private to root. The root itself stays world-traversable: dnsmasq reads
/// the records below it after dropping privileges.
fn lock_dir(state_root: &Path) -> std::io::Result<PathBuf> {
    DirBuilder::new().recursive(true).mode(0o755).create(state_root)?;
    let dir = state_root.join("locks");
    DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::NetConf;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn lock_folder_is_private_but_state_root_stays_readable() {
        let root = std::env::temp_dir().join(format!("smarter-cni-lock-{}", std::process::id())).join("state");
        let lock = NetworkLock::acquire(&root, "mynet").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o755);
        assert_eq!(mode(&root.join("locks")), 0o700);
        drop(lock);
        NetworkLock::acquire(&root, "mynet").unwrap();
        std::fs::remove_dir_all(root.parent().unwrap()).unwrap();
    }

    fn config(extra: &str) -> PluginConfig {
        let json = format!(r#"{{"cniVersion":"1.0.0","name":"mynet","type":"smarter-cni"{extra}}}"#);
        PluginConfig::from_netconf(&NetConf::parse(json.as_bytes()).unwrap()).unwrap()
    }

    fn existing(subnet: &str, gateway: &str, range: Option<&str>) -> Network {
        Network {
            id: "n1".into(),
            name: "mynet".into(),
            driver: "bridge".into(),
            subnet: Some(subnet.into()),
            gateway: Some(gateway.into()),
            ip_range: range.map(str::to_string),
            containers: Vec::new(),
        }
    }

    #[test]
    fn matching_network_has_no_mismatch() {
        assert_eq!(mismatch(&existing("172.38.0.0/16", "172.38.0.1", None), &config("")), None);
    }

    #[test]
    fn other_subnet_says_what_differs_and_how_to_fix() {
        let problem = mismatch(&existing("10.9.0.0/16", "10.9.0.1", None), &config("")).unwrap();
        assert!(problem.contains("subnet is 10.9.0.0/16, configuration says 172.38.0.0/16"), "{problem}");
        assert!(problem.contains("docker network rm mynet"), "{problem}");
    }

    #[test]
    fn container_mode_needs_the_reserving_range() {
        let problem = mismatch(&existing("172.38.0.0/16", "172.38.0.1", None), &config(r#","dns":{"mode":"container"}"#)).unwrap();
        assert!(problem.contains("172.38.128.0/17"), "{problem}");
        let ok = existing("172.38.0.0/16", "172.38.0.1", Some("172.38.128.0/17"));
        assert_eq!(mismatch(&ok, &config(r#","dns":{"mode":"container"}"#)), None);
    }
}

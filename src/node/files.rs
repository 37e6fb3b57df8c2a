//! Node files `setup` installs and `status` inspects: the conflist's place among the
//! runtime's configurations, the loopback link, dnsmasq's configuration.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// libcni loads the first file by name with one of these extensions.
const CNI_CONFIG_EXTENSIONS: &[&str] = &["conf", "conflist", "json"];

/// The CNI configuration files in `dir`, in the order the runtime considers them.
pub fn cni_configs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().and_then(|e| e.to_str()).is_some_and(|e| CNI_CONFIG_EXTENSIONS.contains(&e)))
        .collect();
    files.sort();
    Ok(files)
}

/// Writes a file atomically (staged beside it, then renamed) with the given mode.
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent folder"))?;
    fs::create_dir_all(dir)?;
    let staged = dir.join(format!(".{}.smarter-cni-new", path.file_name().and_then(|n| n.to_str()).unwrap_or("file")));
    let result = (|| {
        let mut file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&staged)?;
        file.write_all(content)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&staged, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&staged);
    }
    result
}

/// dnsmasq reads the records after dropping root: the folder must be listable by others,
/// and every folder above it traversable. Returns the first folder that is not.
pub fn first_unreadable_for_others(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let own = fs::metadata(dir).map(|m| m.permissions().mode() & 0o005 == 0o005).unwrap_or(false);
    if !own {
        return Some(dir.to_path_buf());
    }
    dir.ancestors()
        .skip(1)
        .find(|a| fs::metadata(a).map(|m| m.permissions().mode() & 0o001 == 0).unwrap_or(true))
        .map(Path::to_path_buf)
}

/// What `status` reads from dnsmasq's configuration to spot drift from the conflist.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DnsmasqSettings {
    pub listen_addresses: Vec<String>,
    pub hostsdirs: Vec<String>,
    pub servers_files: Vec<String>,
    pub pid_files: Vec<String>,
    /// `local=//`: names without a dot are answered locally, whatever their type.
    pub local_unqualified: bool,
}

pub fn read_dnsmasq_settings(path: &Path) -> io::Result<DnsmasqSettings> {
    let mut settings = DnsmasqSettings::default();
    for line in fs::read_to_string(path)?.lines() {
        let Some((key, value)) = line.trim().split_once('=') else { continue };
        match key.trim() {
            "listen-address" => settings.listen_addresses.extend(value.split(',').map(|v| v.trim().to_string())),
            "hostsdir" => settings.hostsdirs.push(value.trim().to_string()),
            "servers-file" => settings.servers_files.push(value.trim().to_string()),
            "pid-file" => settings.pid_files.push(value.trim().to_string()),
            "local" | "server" if value.trim() == "//" => settings.local_unqualified = true,
            _ => {}
        }
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_dnsmasq_config_matches_shipped_conflist_defaults() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/rootfs");
        let settings = read_dnsmasq_settings(&root.join("etc/smarter-cni/dnsmasq.conf")).unwrap();
        let (_, config) = super::super::load_config(&root.join("etc/cni/net.d/10-smarter-cni.conflist")).unwrap();
        assert_eq!(settings.listen_addresses, vec![config.dns.address.to_string()]);
        assert_eq!(settings.hostsdirs, vec![config.dns.records_dir.display().to_string()]);
        assert_eq!(settings.servers_files, vec![config.dns.domains_file.display().to_string()]);
        assert_eq!(settings.pid_files, vec![config.dns.pid_file.display().to_string()]);
        assert!(settings.local_unqualified);
    }

    #[test]
    fn finds_the_folder_that_hides_records_from_dnsmasq() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("smarter-cni-perm-{}", std::process::id()));
        let records = base.join("state/mynet/hosts");
        fs::create_dir_all(&records).unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(first_unreadable_for_others(&records), None);
        fs::set_permissions(base.join("state"), fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(first_unreadable_for_others(&records), Some(base.join("state")));
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn config_order_and_atomic_write() {
        let dir = std::env::temp_dir().join(format!("smarter-cni-files-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        write_atomic(&dir.join("10-smarter-cni.conflist"), b"{}", 0o644).unwrap();
        write_atomic(&dir.join("05-other.conf"), b"{}", 0o644).unwrap();
        fs::write(dir.join("README"), "x").unwrap();
        let names: Vec<_> = cni_configs(&dir).unwrap().iter().map(|p| p.file_name().unwrap().to_owned()).collect();
        assert_eq!(names, ["05-other.conf", "10-smarter-cni.conflist"]);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 3, "no staging file left");
        fs::remove_dir_all(dir).unwrap();
    }
}

//! The pod's resolv.conf: point it at Docker's embedded DNS, keeping what the runtime
//! chose for search domains and options.
//!
//! Docker 20.10 rewrites the file itself on connect; 26.x leaves a file the runtime already
//! modified alone (moby #47041), so without this pods would never ask 127.0.0.11.

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

pub const EMBEDDED_DNS: &str = "127.0.0.11";

/// The new content when `content` does not already use only the embedded DNS; `None` when
/// it does (nothing to write).
pub fn with_embedded_dns(content: &str) -> Option<String> {
    let is_nameserver = |line: &str| line.split_whitespace().next() == Some("nameserver");
    let servers: Vec<&str> = content
        .lines()
        .filter(|l| is_nameserver(l))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    if servers == [EMBEDDED_DNS] {
        return None;
    }
    let mut out = format!("# nameserver set by smarter-cni: Docker's embedded DNS\nnameserver {EMBEDDED_DNS}\n");
    for line in content.lines().filter(|l| !is_nameserver(l)) {
        out.push_str(line);
        out.push('\n');
    }
    Some(out)
}

/// Rewrites the file in place. Not by rename: Docker bind-mounts this very inode into the
/// container, so a renamed-in file would never be seen by the pod. ADD runs before any
/// app container starts, so nothing reads the file while it changes; the new content goes
/// in with one write and the length is set after it, so the file is never empty.
pub fn point_at_embedded_dns(path: &Path) -> io::Result<bool> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let mut content = String::new();
    file.read_to_string(&mut content)?;
    let Some(new_content) = with_embedded_dns(&content) else {
        return Ok(false);
    };
    file.seek(SeekFrom::Start(0))?;
    file.write_all(new_content.as_bytes())?;
    file.set_len(new_content.len() as u64)?;
    file.sync_data()?;
    Ok(true)
}

/// True when the file names the embedded DNS as its only nameserver.
pub fn uses_embedded_dns(path: &Path) -> io::Result<bool> {
    Ok(with_embedded_dns(&std::fs::read_to_string(path)?).is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBELET_FILE: &str = "nameserver 172.38.0.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n";

    #[test]
    fn replaces_nameservers_and_keeps_search_and_options() {
        let new = with_embedded_dns(KUBELET_FILE).unwrap();
        assert!(new.contains("nameserver 127.0.0.11\n"));
        assert!(!new.contains("172.38.0.1"));
        assert!(new.contains("search default.svc.cluster.local svc.cluster.local cluster.local\n"));
        assert!(new.contains("options ndots:5\n"));
        assert_eq!(with_embedded_dns(&new), None, "rewriting is idempotent");
    }

    #[test]
    fn docker_20_file_is_left_alone() {
        assert_eq!(with_embedded_dns("search x\nnameserver 127.0.0.11\noptions ndots:0\n"), None);
        assert!(with_embedded_dns("nameserver 127.0.0.11\nnameserver 8.8.8.8\n").is_some());
    }

    #[test]
    fn rewrites_file_in_place_keeping_its_inode() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("smarter-cni-resolv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("resolv.conf");
        let long_original = format!("{KUBELET_FILE}# {}\n", "x".repeat(300));
        std::fs::write(&path, &long_original).unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();
        assert!(point_at_embedded_dns(&path).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
        assert!(uses_embedded_dns(&path).unwrap());
        let content = std::fs::read_to_string(&path).unwrap();
        assert!(content.ends_with(&format!("# {}\n", "x".repeat(300))), "no stale bytes past the end");
        assert!(!point_at_embedded_dns(&path).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

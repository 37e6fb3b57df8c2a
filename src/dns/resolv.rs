//! The pod's resolv.conf: Docker's embedded DNS first (it knows every pod's names), node
//! DNS second (it forwards the rest upstream), keeping the runtime's search and options.
//!
//! Docker 20.10 rewrites the file itself on connect; 26.x leaves a file the runtime already
//! modified alone (moby #47041), so pods would never ask 127.0.0.11. And for such a
//! container 26.x's embedded DNS has no upstream servers at all: it answers SERVFAIL for
//! names outside the network, so resolvers move on to node DNS (glibc and musl both do).

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::Ipv4Addr;
use std::path::Path;

pub const EMBEDDED_DNS: &str = "127.0.0.11";

/// The new content, or `None` when `content` already names exactly these nameservers.
pub fn with_embedded_dns(content: &str, node_dns: Option<Ipv4Addr>) -> Option<String> {
    let is_nameserver = |line: &str| line.split_whitespace().next() == Some("nameserver");
    let servers: Vec<&str> = content
        .lines()
        .filter(|l| is_nameserver(l))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    let mut wanted = vec![EMBEDDED_DNS.to_string()];
    if let Some(node) = node_dns.map(|a| a.to_string()).filter(|a| a != EMBEDDED_DNS) {
        wanted.push(node);
    }
    if servers == wanted {
        return None;
    }
    let mut out = String::from("# nameservers set by smarter-cni: Docker's embedded DNS, then node DNS\n");
    for server in &wanted {
        out.push_str(&format!("nameserver {server}\n"));
    }
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
pub fn point_at_embedded_dns(path: &Path, node_dns: Option<Ipv4Addr>) -> io::Result<bool> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let mut content = String::new();
    file.read_to_string(&mut content)?;
    let Some(new_content) = with_embedded_dns(&content, node_dns) else {
        return Ok(false);
    };
    file.seek(SeekFrom::Start(0))?;
    file.write_all(new_content.as_bytes())?;
    // No fsync: after a crash the sandbox is recreated with a new file anyway.
    file.set_len(new_content.len() as u64)?;
    Ok(true)
}

/// True when the file names exactly the nameservers ADD sets.
pub fn uses_embedded_dns(path: &Path, node_dns: Option<Ipv4Addr>) -> io::Result<bool> {
    Ok(with_embedded_dns(&std::fs::read_to_string(path)?, node_dns).is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBELET_FILE: &str = "nameserver 172.38.0.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n";

    const NODE_DNS: Option<Ipv4Addr> = Some(Ipv4Addr::new(172, 38, 0, 1));

    fn nameservers(content: &str) -> Vec<&str> {
        content.lines().filter_map(|l| l.strip_prefix("nameserver ")).collect()
    }

    #[test]
    fn replaces_nameservers_and_keeps_search_and_options() {
        let runtime_file = KUBELET_FILE.replace("172.38.0.1", "10.43.0.10");
        let new = with_embedded_dns(&runtime_file, NODE_DNS).unwrap();
        assert_eq!(nameservers(&new), ["127.0.0.11", "172.38.0.1"]);
        assert!(!new.contains("10.43.0.10"));
        assert!(new.contains("search default.svc.cluster.local svc.cluster.local cluster.local\n"));
        assert!(new.contains("options ndots:5\n"));
        assert_eq!(with_embedded_dns(&new, NODE_DNS), None, "rewriting is idempotent");
        assert_eq!(nameservers(&with_embedded_dns(&runtime_file, None).unwrap()), ["127.0.0.11"]);
    }

    #[test]
    fn docker_20_file_gets_node_dns_as_second_server() {
        let docker_20 = "search x\nnameserver 127.0.0.11\noptions ndots:0\n";
        assert_eq!(with_embedded_dns(docker_20, None), None);
        let new = with_embedded_dns(docker_20, NODE_DNS).unwrap();
        assert_eq!(nameservers(&new), ["127.0.0.11", "172.38.0.1"]);
        assert!(new.contains("search x\n") && new.contains("options ndots:0\n"));
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
        assert!(point_at_embedded_dns(&path, NODE_DNS).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
        assert!(uses_embedded_dns(&path, NODE_DNS).unwrap());
        let content = std::fs::read_to_string(&path).unwrap();
        assert!(content.ends_with(&format!("# {}\n", "x".repeat(300))), "no stale bytes past the end");
        assert!(!point_at_embedded_dns(&path, NODE_DNS).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

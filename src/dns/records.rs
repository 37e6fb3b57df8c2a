//! Per-sandbox DNS records: one hosts-format file per attachment, in a folder dnsmasq reads
//! with `hostsdir=` (it picks up new, changed and removed files through inotify, so no
//! restart and no polling). The same files are the plugin's record of what it attached,
//! which GC and `status` read.
//!
//! File name: the CNI container ID (validated as `[A-Za-z0-9][A-Za-z0-9_.-]*`). Content:
//! ```text
//! # smarter-cni record v1 container=<docker id> address=172.38.0.3 pod=default/web-0
//! 172.38.0.3 web-0 web-0.default
//! ```
//! Writes go to a staging folder beside the records folder and are renamed in, so dnsmasq
//! never reads half a file. Every change (write, remove, add_names) holds an exclusive
//! `flock` on the staging folder itself (no lock file to leave behind): `add_names` is a
//! read-modify-write done by the hostnames service while plugin calls run, and without the
//! lock its rename could bring back a record that a DEL had just removed.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const HEADER: &str = "# smarter-cni record v1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The runtime's container ID (`CNI_CONTAINERID`), also the file name.
    pub attachment_id: String,
    /// The Docker container attached; equal to `attachment_id` under cri-dockerd.
    pub container: String,
    pub address: Ipv4Addr,
    /// `<namespace>/<pod>` when the runtime said.
    pub pod: Option<String>,
    pub names: Vec<String>,
}

impl Record {
    /// The pod's namespace, from `pod=<namespace>/<pod>`.
    pub fn namespace(&self) -> Option<&str> {
        self.pod.as_deref()?.split_once('/').map(|(ns, _)| ns)
    }

    fn render(&self) -> String {
        let mut text = format!("{HEADER} container={} address={}", self.container, self.address);
        if let Some(pod) = &self.pod {
            text.push_str(&format!(" pod={pod}"));
        }
        text.push('\n');
        if !self.names.is_empty() {
            text.push_str(&format!("{} {}\n", self.address, self.names.join(" ")));
        }
        text
    }

    fn parse(attachment_id: &str, text: &str) -> Option<Record> {
        let mut lines = text.lines();
        let header = lines.next()?.strip_prefix(HEADER)?;
        let field = |key: &str| header.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='));
        let container = field("container")?.to_string();
        let address = field("address")?.parse().ok()?;
        let pod = field("pod").map(str::to_string);
        let names = lines
            .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|line| line.split_whitespace().skip(1).map(str::to_string).collect())
            .unwrap_or_default();
        Some(Record { attachment_id: attachment_id.to_string(), container, address, pod, names })
    }
}

/// The records of one network.
#[derive(Debug, Clone)]
pub struct RecordStore {
    dir: PathBuf,
    staging: PathBuf,
}

impl RecordStore {
    /// `dir` is what dnsmasq's `hostsdir=` names; staging sits beside it on the same
    /// filesystem so that rename is atomic.
    pub fn new(dir: impl Into<PathBuf>) -> RecordStore {
        let dir = dir.into();
        let mut staging = dir.clone().into_os_string();
        staging.push(".staging");
        RecordStore { dir, staging: PathBuf::from(staging) }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates both folders (0755: dnsmasq reads them after dropping root).
    pub fn ensure_dirs(&self) -> io::Result<()> {
        let mut builder = DirBuilder::new();
        builder.recursive(true).mode(0o755);
        builder.create(&self.dir)?;
        builder.create(&self.staging)
    }

    fn path_of(&self, attachment_id: &str) -> io::Result<PathBuf> {
        if !crate::cni::env::is_container_id(attachment_id) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{attachment_id:?} is not a container ID")));
        }
        Ok(self.dir.join(attachment_id))
    }

    /// Takes the store's lock (released on drop). `NotFound` when the staging folder does
    /// not exist: then no record was ever written through this store since the last reboot.
    fn lock(&self) -> io::Result<File> {
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&self.staging)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot open {} to lock the DNS records: {e}", self.staging.display())))?;
        loop {
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(dir);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(io::Error::new(e.kind(), format!("cannot lock {}: {e}", self.staging.display())));
            }
        }
    }

    /// Stages `text` and renames it over `target`; the caller holds the lock, so one staged
    /// name per attachment and process is enough.
    fn replace(&self, attachment_id: &str, target: &Path, text: &str) -> io::Result<()> {
        let staged = self.staging.join(format!("{attachment_id}.{}", std::process::id()));
        let result = (|| {
            let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&staged)?;
            file.write_all(text.as_bytes())?;
            fs::rename(&staged, target)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&staged);
        }
        result
    }

    /// Writes or replaces a record atomically.
    pub fn write(&self, record: &Record) -> io::Result<()> {
        let target = self.path_of(&record.attachment_id)?;
        self.ensure_dirs()?;
        let _lock = self.lock()?;
        self.replace(&record.attachment_id, &target, &record.render())
    }

    /// Removes a record; a record that is already gone is not an error.
    pub fn remove(&self, attachment_id: &str) -> io::Result<()> {
        let target = self.path_of(attachment_id)?;
        // Without a staging folder nobody can hold the lock to add names, so none is needed.
        let _lock = match self.lock() {
            Ok(lock) => Some(lock),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        match fs::remove_file(target) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Adds `names` (DNS names, e.g. the hostname the runtime wrote after ADD) in front of
    /// the record's names, the way Docker mode orders them (dnsmasq answers PTR queries with
    /// the first). Only a record that still exists is changed, and never brought back once
    /// removed. `Ok(true)`: the record exists and now has every name (rewritten only if one
    /// was missing); `Ok(false)`: there is no record. The header line is kept as it is.
    pub fn add_names(&self, attachment_id: &str, names: &[String]) -> io::Result<bool> {
        let target = self.path_of(attachment_id)?;
        if let Some(bad) = names.iter().find(|n| !super::names::is_dns_name(n)) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{bad:?} is not a DNS name")));
        }
        let _lock = match self.lock() {
            Ok(lock) => lock,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let text = match fs::read_to_string(&target) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let Some(record) = Record::parse(attachment_id, &text) else { return Ok(false) };
        let mut missing: Vec<&String> = Vec::new();
        for name in names {
            if !record.names.contains(name) && !missing.contains(&name) {
                missing.push(name);
            }
        }
        if missing.is_empty() {
            return Ok(true);
        }
        let mut all: Vec<&str> = missing.iter().map(|n| n.as_str()).collect();
        all.extend(record.names.iter().map(String::as_str));
        let hosts_line = format!("{} {}", record.address, all.join(" "));
        let mut lines: Vec<&str> = text.lines().collect();
        match lines.iter().skip(1).position(|l| !l.trim().is_empty() && !l.starts_with('#')) {
            Some(at) => lines[at + 1] = &hosts_line,
            None => lines.push(&hosts_line),
        }
        let mut updated = lines.join("\n");
        updated.push('\n');
        self.replace(attachment_id, &target, &updated)?;
        Ok(true)
    }

    pub fn read(&self, attachment_id: &str) -> io::Result<Option<Record>> {
        match fs::read_to_string(self.path_of(attachment_id)?) {
            Ok(text) => Ok(Record::parse(attachment_id, &text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every record in the folder; files that are not records are left alone.
    pub fn list(&self) -> io::Result<Vec<Record>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut records = Vec::new();
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
            if !crate::cni::env::is_container_id(&name) {
                continue;
            }
            if let Ok(Some(record)) = self.read(&name) {
                records.push(record);
            }
        }
        records.sort_by(|a, b| a.attachment_id.cmp(&b.attachment_id));
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_store(tag: &str) -> (PathBuf, RecordStore) {
        let base = std::env::temp_dir().join(format!("smarter-cni-records-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        (base.clone(), RecordStore::new(base.join("hosts")))
    }

    /// Removes a test's folder even when the test fails.
    struct Cleanup(PathBuf);

    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn record(id: &str, ip: [u8; 4]) -> Record {
        Record {
            attachment_id: id.into(),
            container: format!("docker-{id}"),
            address: Ipv4Addr::from(ip),
            pod: Some("default/web-0".into()),
            names: vec!["web-0".into(), "web-0.default".into()],
        }
    }

    #[test]
    fn write_read_list_remove() {
        let (base, store) = temp_store("crud");
        store.write(&record("bbb", [172, 38, 0, 4])).unwrap();
        store.write(&record("aaa", [172, 38, 0, 3])).unwrap();
        let text = fs::read_to_string(store.dir().join("aaa")).unwrap();
        assert_eq!(text, "# smarter-cni record v1 container=docker-aaa address=172.38.0.3 pod=default/web-0\n172.38.0.3 web-0 web-0.default\n");
        let mode = fs::metadata(store.dir().join("aaa")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(store.read("aaa").unwrap(), Some(record("aaa", [172, 38, 0, 3])));
        let ids: Vec<_> = store.list().unwrap().into_iter().map(|r| r.attachment_id).collect();
        assert_eq!(ids, vec!["aaa", "bbb"]);
        store.remove("aaa").unwrap();
        store.remove("aaa").unwrap();
        assert_eq!(store.read("aaa").unwrap(), None);
        assert_eq!(fs::read_dir(base.join("hosts.staging")).unwrap().count(), 0, "nothing left staged");
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn refuses_path_like_ids_and_ignores_foreign_files() {
        let (base, store) = temp_store("hostile");
        assert!(store.write(&record("../escape", [1, 2, 3, 4])).is_err());
        assert!(store.remove("../../etc/passwd").is_err());
        store.ensure_dirs().unwrap();
        fs::write(store.dir().join(".hidden"), "x").unwrap();
        fs::write(store.dir().join("notes"), "not a record").unwrap();
        assert!(store.list().unwrap().is_empty());
        assert!(!base.join("escape").exists());
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn record_without_names_still_tracks_the_attachment() {
        let (base, store) = temp_store("nameless");
        let mut nameless = record("ccc", [172, 38, 0, 9]);
        nameless.names.clear();
        store.write(&nameless).unwrap();
        let back = store.read("ccc").unwrap().unwrap();
        assert_eq!(back.container, "docker-ccc");
        assert!(back.names.is_empty());
        assert_eq!(back.address, Ipv4Addr::new(172, 38, 0, 9));
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn add_names_puts_them_first_and_keeps_the_header() {
        let (base, store) = temp_store("add");
        let _cleanup = Cleanup(base.clone());
        assert!(!store.add_names("ddd", &["example".into()]).unwrap(), "no store yet: no record");
        store.write(&record("ddd", [172, 38, 0, 5])).unwrap();
        assert!(!store.add_names("eee", &["example".into()]).unwrap(), "no such record");
        assert!(!store.dir().join("eee").exists());
        assert!(store.add_names("ddd", &["example".into(), "example.gw.local".into()]).unwrap());
        let text = fs::read_to_string(store.dir().join("ddd")).unwrap();
        assert_eq!(
            text,
            "# smarter-cni record v1 container=docker-ddd address=172.38.0.5 pod=default/web-0\n\
             172.38.0.5 example example.gw.local web-0 web-0.default\n"
        );
        let before = fs::metadata(store.dir().join("ddd")).unwrap().modified().unwrap();
        assert!(store.add_names("ddd", &["web-0".into(), "example".into()]).unwrap(), "already there");
        assert_eq!(fs::metadata(store.dir().join("ddd")).unwrap().modified().unwrap(), before, "not rewritten");
        for bad in ["a b", "x\n127.0.0.1 evil", "", "Web"] {
            assert_eq!(store.add_names("ddd", &[bad.to_string()]).unwrap_err().kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        assert!(store.add_names("../ddd", &["example".into()]).is_err());
        let mut nameless = record("fff", [172, 38, 0, 6]);
        nameless.names.clear();
        store.write(&nameless).unwrap();
        assert!(store.add_names("fff", &["solo".into()]).unwrap());
        assert_eq!(store.read("fff").unwrap().unwrap().names, vec!["solo"]);
        assert_eq!(fs::read_dir(base.join("hosts.staging")).unwrap().count(), 0, "nothing left staged");
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn add_names_never_brings_back_a_removed_record() {
        let (base, store) = temp_store("delrace");
        let _cleanup = Cleanup(base.clone());
        let mut added_before_del = 0;
        for round in 0..200 {
            let id = format!("race{round}");
            store.write(&record(&id, [172, 38, 1, 1])).unwrap();
            let start = std::sync::Barrier::new(2);
            let (added, removed) = std::thread::scope(|s| {
                let adder = s.spawn(|| {
                    start.wait();
                    store.add_names(&id, &["example".into()]).unwrap()
                });
                let remover = s.spawn(|| {
                    start.wait();
                    store.remove(&id)
                });
                (adder.join().unwrap(), remover.join().unwrap())
            });
            removed.unwrap();
            added_before_del += added as usize;
            assert!(!store.dir().join(&id).exists(), "round {round}: DEL undone (add_names returned {added})");
        }
        eprintln!("add_names won the race {added_before_del} of 200 times; the record stayed removed every time");
        assert_eq!(fs::read_dir(base.join("hosts.staging")).unwrap().count(), 0);
        fs::remove_dir_all(base).unwrap();
    }
}

//! Bridge mode's IPv4 address store: which pod attachment holds which address of the pod
//! subnet. No `host-local` binary: one folder per network (the caller passes it, by default
//! `/var/lib/smarter-cni/<network>/leases`), one file per handed-out address, named by the
//! address so that `ls` on a gateway shows what is taken:
//! ```text
//! /var/lib/smarter-cni/mynet/leases/172.38.0.7
//! # smarter-cni lease v1
//! container=<CNI_CONTAINERID> ifname=eth0 pod=default/web-0
//! ```
//! Format rules (they extend the README's compatibility rules): a v1 reader ignores unknown
//! `key=value` fields on the second line, so adding a field keeps v1; an incompatible change
//! gets a new header (`v2`). A file named by an address whose content this version cannot
//! read (a newer version, or damage) still holds its address: it is never handed out, never
//! deleted, and is listed by [`LeaseStore::unreadable`] for `status`.
//!
//! Concurrency: the plugin is one process per call, so every change happens under an
//! exclusive `flock` on `<dir>/.lock` (released by the kernel if a call dies). Reads need no
//! lock: a lease appears by an atomic rename of a complete file. `<dir>/.last` holds the
//! last address handed out; allocation goes on after it (round-robin, like host-local), so an
//! address freed a moment ago is not given straight to the next pod while stale ARP entries,
//! conntrack flows or DNS answers still point at it.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::ipv4::Ipv4Net;

const HEADER: &str = "# smarter-cni lease v1";
const LOCK_FILE: &str = ".lock";
const LAST_FILE: &str = ".last";
const STAGING_PREFIX: &str = ".staging-";
const MAX_FILE: usize = 4096;

/// Where addresses come from: `subnet`, limited to `range` (`ipRange`) when set, never the
/// network or broadcast address and never one of `reserved` (the gateway, node DNS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub subnet: Ipv4Net,
    pub range: Option<Ipv4Net>,
    pub reserved: Vec<Ipv4Addr>,
}

impl Pool {
    /// True when the address may be handed to a pod.
    pub fn is_assignable(&self, ip: Ipv4Addr) -> bool {
        self.subnet.is_host(ip) && self.range.is_none_or(|r| r.contains(ip)) && !self.reserved.contains(&ip)
    }

    /// First and last address of the range, as numbers.
    fn bounds(&self) -> Result<(u32, u32), IpamError> {
        let range = self.range.unwrap_or(self.subnet);
        if !self.subnet.covers(range) {
            return Err(IpamError::Invalid(format!("ipRange {range} is not inside subnet {}", self.subnet)));
        }
        Ok((u32::from(range.network()), u32::from(range.broadcast())))
    }

    fn describe(&self) -> String {
        match self.range {
            Some(range) => format!("{} (range {range})", self.subnet),
            None => self.subnet.to_string(),
        }
    }
}

/// One attachment, as the runtime names it: `CNI_CONTAINERID` and `CNI_IFNAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseKey {
    pub container_id: String,
    pub ifname: String,
}

impl LeaseKey {
    pub fn new(container_id: impl Into<String>, ifname: impl Into<String>) -> LeaseKey {
        LeaseKey { container_id: container_id.into(), ifname: ifname.into() }
    }

    /// Both parts end up in a file, so both are checked before anything is written.
    fn validate(&self) -> Result<(), String> {
        if !crate::cni::env::is_container_id(&self.container_id) {
            return Err(format!("{:?} is not a container ID ([A-Za-z0-9][A-Za-z0-9_.-]*)", self.container_id));
        }
        if !is_ifname(&self.ifname) {
            return Err(format!("{:?} is not an interface name (1-15 printable ASCII characters, no '/', ':' or space)", self.ifname));
        }
        Ok(())
    }
}

/// The kernel's rule for interface names (`dev_valid_name`: below IFNAMSIZ, not `.` or `..`,
/// no `/`, `:` or white space), further limited to printable ASCII so a lease file stays text.
pub fn is_ifname(text: &str) -> bool {
    (1..=15).contains(&text.len())
        && text != "."
        && text != ".."
        && text.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

/// `<namespace>/<pod>` as the runtime passed it: one printable token.
fn is_pod(text: &str) -> bool {
    (1..=512).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic())
}

/// An address held by an attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub key: LeaseKey,
    /// `<namespace>/<pod>` when the runtime said.
    pub pod: Option<String>,
}

impl Lease {
    fn render(&self) -> String {
        let mut text = format!("{HEADER}\ncontainer={} ifname={}", self.key.container_id, self.key.ifname);
        if let Some(pod) = &self.pod {
            text.push_str(&format!(" pod={pod}"));
        }
        text.push('\n');
        text
    }
}

/// What one address-named file holds.
enum Content {
    Lease(Lease),
    /// Zero bytes: what an unsynced write can leave after a power cut. `reclaim` removes it.
    Empty,
    /// A newer format or damage: the address stays taken and is reported.
    Unreadable,
}

fn parse(address: Ipv4Addr, text: &str) -> Content {
    if text.is_empty() {
        return Content::Empty;
    }
    let mut lines = text.lines();
    if lines.next().map(str::trim_end) != Some(HEADER) {
        return Content::Unreadable;
    }
    let body = lines.find(|l| !l.trim().is_empty() && !l.starts_with('#')).unwrap_or("");
    let field = |key: &str| body.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='));
    let (Some(container_id), Some(ifname)) = (field("container"), field("ifname")) else {
        return Content::Unreadable;
    };
    let key = LeaseKey::new(container_id, ifname);
    let pod = field("pod").map(str::to_string);
    if key.validate().is_err() || pod.as_deref().is_some_and(|p| !is_pod(p)) {
        return Content::Unreadable;
    }
    Content::Lease(Lease { address, key, pod })
}

/// The address a file name stands for, when it is exactly the canonical dotted quad.
fn address_of(name: &str) -> Option<Ipv4Addr> {
    let ip: Ipv4Addr = name.parse().ok()?;
    (ip.to_string() == name).then_some(ip)
}

#[derive(Debug)]
pub enum IpamError {
    /// Every assignable address of the pool is taken.
    Exhausted { pool: String, leases: usize },
    /// A bad key, pod or pool: the caller's input, nothing was changed.
    Invalid(String),
    Io(io::Error),
}

impl fmt::Display for IpamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpamError::Exhausted { pool, leases } => write!(
                f,
                "no free address in {pool}: {leases} leases; check `smarter-cni status` for leases of pods that are gone"
            ),
            IpamError::Invalid(message) => f.write_str(message),
            IpamError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for IpamError {}

impl From<io::Error> for IpamError {
    fn from(e: io::Error) -> Self {
        IpamError::Io(e)
    }
}

/// Adds the path and the action to an I/O error, keeping its kind.
fn context<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> io::Error + 'a {
    move |e| io::Error::new(e.kind(), format!("cannot {what} {}: {e}", path.display()))
}

/// Everything in the folder, read once.
#[derive(Default)]
struct Scan {
    leases: Vec<Lease>,
    /// Every address with a file, whatever its content.
    taken: HashSet<Ipv4Addr>,
    unreadable: Vec<PathBuf>,
    empty: Vec<PathBuf>,
    /// Staging files left by a call that died mid-write.
    staged: Vec<PathBuf>,
}

/// Held while the store changes; the kernel releases it when the file closes or the process dies.
struct StoreLock {
    _file: File,
}

/// The lease folder of one network.
#[derive(Debug, Clone)]
pub struct LeaseStore {
    dir: PathBuf,
}

impl LeaseStore {
    pub fn new(dir: impl Into<PathBuf>) -> LeaseStore {
        LeaseStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Hands `key` an address of `pool`, or the one it already holds (a repeated ADD). The
    /// flag is true when the lease is new (the caller rolls it back with `release` if the rest
    /// of its ADD fails).
    pub fn allocate(&self, pool: &Pool, key: &LeaseKey, pod: Option<&str>) -> Result<(Lease, bool), IpamError> {
        key.validate().map_err(IpamError::Invalid)?;
        if let Some(pod) = pod.filter(|p| !is_pod(p)) {
            return Err(IpamError::Invalid(format!("{pod:?} is not a pod name (<namespace>/<pod>, printable, no spaces)")));
        }
        let (first, last) = pool.bounds()?;
        let _lock = self.lock()?;
        let scan = self.scan()?;
        if let Some(held) = scan.leases.iter().find(|l| l.key == *key) {
            if !pool.subnet.is_host(held.address) {
                return Err(IpamError::Invalid(format!(
                    "container {} ({}) already holds {}, which is outside subnet {}; delete the pod to free it",
                    key.container_id, key.ifname, held.address, pool.subnet
                )));
            }
            return Ok((held.clone(), false));
        }
        // Round-robin: start after the last address handed out, when it is still in range.
        let size = u64::from(last - first) + 1;
        let start = match self.read_last() {
            Some(ip) if (first..=last).contains(&u32::from(ip)) => (u64::from(u32::from(ip) - first) + 1) % size,
            _ => 0,
        };
        let free = (0..size)
            .map(|i| Ipv4Addr::from(first + ((start + i) % size) as u32))
            .find(|ip| pool.is_assignable(*ip) && !scan.taken.contains(ip));
        let Some(address) = free else {
            let leases = scan.taken.iter().filter(|ip| (first..=last).contains(&u32::from(**ip))).count();
            return Err(IpamError::Exhausted { pool: pool.describe(), leases });
        };
        let lease = Lease { address, key: key.clone(), pod: pod.map(str::to_string) };
        self.write_lease(&lease)?;
        self.write_last(address);
        Ok((lease, true))
    }

    /// The lease of an attachment, if it has one.
    pub fn lookup(&self, key: &LeaseKey) -> io::Result<Option<Lease>> {
        key.validate().map_err(|m| io::Error::new(io::ErrorKind::InvalidInput, m))?;
        Ok(self.scan()?.leases.into_iter().find(|l| l.key == *key))
    }

    /// Frees an attachment's address; `Ok(None)` when it held none (a repeated DEL).
    pub fn release(&self, key: &LeaseKey) -> io::Result<Option<Ipv4Addr>> {
        key.validate().map_err(|m| io::Error::new(io::ErrorKind::InvalidInput, m))?;
        if !self.dir.exists() {
            return Ok(None);
        }
        let _lock = self.lock()?;
        let mut freed = None;
        // Every file of the key, should there ever be more than one.
        for lease in self.scan()?.leases.into_iter().filter(|l| l.key == *key) {
            self.remove(lease.address)?;
            freed.get_or_insert(lease.address);
        }
        Ok(freed)
    }

    /// Every readable lease, by address.
    pub fn list(&self) -> io::Result<Vec<Lease>> {
        Ok(self.scan()?.leases)
    }

    /// Address files this version cannot read (a newer format, or damage): their addresses
    /// stay taken until someone looks. For `status`.
    pub fn unreadable(&self) -> io::Result<Vec<PathBuf>> {
        let scan = self.scan()?;
        let mut paths = scan.unreadable;
        paths.extend(scan.empty);
        paths.sort();
        Ok(paths)
    }

    /// Frees every lease `keep` rejects (GC: attachments the runtime no longer lists; boot:
    /// pods that are gone) and returns them. Also clears what a crashed call can leave: empty
    /// lease files and staging files. Files of an unknown format are kept.
    pub fn reclaim(&self, keep: impl Fn(&Lease) -> bool) -> io::Result<Vec<Lease>> {
        if !self.dir.exists() {
            return Ok(Vec::new());
        }
        let _lock = self.lock()?;
        let scan = self.scan()?;
        let mut freed = Vec::new();
        for lease in scan.leases.into_iter().filter(|l| !keep(l)) {
            self.remove(lease.address)?;
            freed.push(lease);
        }
        // Under the lock no call is writing, so these are leftovers.
        for path in scan.empty.iter().chain(&scan.staged) {
            remove_if_present(path)?;
        }
        Ok(freed)
    }

    /// For STATUS: the folder exists (or can be created), is writable, and the lock can be
    /// opened. Writes nothing once the folder and lock file exist (STATUS runs every few
    /// seconds; a gateway's SD card should not pay for it).
    pub fn check_usable(&self) -> Result<(), String> {
        let dir = self.dir.display();
        self.ensure_dir().map_err(|e| format!("the address store {dir} cannot be created: {e}"))?;
        let file = self.open_lock().map_err(|e| format!("the address store lock {dir}/{LOCK_FILE} cannot be opened: {e}"))?;
        // SAFETY: flock on a descriptor we own. Busy is fine: another call is allocating.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(format!("the address store lock {dir}/{LOCK_FILE} cannot be taken: {e}"));
            }
        }
        let c_dir = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes())
            .map_err(|_| format!("the address store path {dir:?} contains a NUL byte"))?;
        // SAFETY: access() reads a NUL-terminated path we own; it reports a read-only mount too.
        if unsafe { libc::access(c_dir.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
            return Err(format!("the address store {dir} is not writable: {}", io::Error::last_os_error()));
        }
        Ok(())
    }

    fn ensure_dir(&self) -> io::Result<()> {
        DirBuilder::new().recursive(true).mode(0o755).create(&self.dir)
    }

    /// The lock file is private: only the plugin (root) takes it.
    fn open_lock(&self) -> io::Result<File> {
        OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(self.dir.join(LOCK_FILE))
    }

    fn lock(&self) -> io::Result<StoreLock> {
        self.ensure_dir().map_err(context("create", &self.dir))?;
        let file = self.open_lock().map_err(context("open", &self.dir.join(LOCK_FILE)))?;
        loop {
            // SAFETY: flock on a descriptor we own; blocks until the holder releases it.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(StoreLock { _file: file });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(context("lock", &self.dir.join(LOCK_FILE))(e));
            }
        }
    }

    fn scan(&self) -> io::Result<Scan> {
        let mut scan = Scan::default();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(scan),
            Err(e) => return Err(context("read", &self.dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(context("read", &self.dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if name.starts_with(STAGING_PREFIX) {
                scan.staged.push(path);
                continue;
            }
            // Anything else not named by an address is not ours to judge: left alone.
            let Some(address) = address_of(name) else { continue };
            scan.taken.insert(address);
            let text = if entry.file_type().map_err(context("read", &path))?.is_file() {
                match read_small(&path) {
                    Ok(text) => text,
                    // Released between read_dir and read (reads take no lock).
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        scan.taken.remove(&address);
                        continue;
                    }
                    Err(e) => return Err(context("read", &path)(e)),
                }
            } else {
                None
            };
            match text.map(|t| parse(address, &t)) {
                Some(Content::Lease(lease)) => scan.leases.push(lease),
                Some(Content::Empty) => scan.empty.push(path),
                Some(Content::Unreadable) | None => scan.unreadable.push(path),
            }
        }
        scan.leases.sort_by_key(|l| l.address);
        Ok(scan)
    }

    /// Writes a complete file beside the target and renames it in (the lock is held, so the
    /// target is free). No fsync, on purpose: gateways run on SD cards, and a lease lost in a
    /// power cut belongs to a pod that did not survive it either; `setup` reclaims at boot.
    fn write_lease(&self, lease: &Lease) -> io::Result<()> {
        let target = self.dir.join(lease.address.to_string());
        let staged = self.dir.join(format!("{STAGING_PREFIX}{}", std::process::id()));
        let result = (|| {
            let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o644).open(&staged)?;
            file.write_all(lease.render().as_bytes())?;
            fs::rename(&staged, &target)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&staged);
        }
        result.map_err(context("write lease", &target))
    }

    fn remove(&self, address: Ipv4Addr) -> io::Result<()> {
        remove_if_present(&self.dir.join(address.to_string()))
    }

    fn read_last(&self) -> Option<Ipv4Addr> {
        fs::read_to_string(self.dir.join(LAST_FILE)).ok()?.trim().parse().ok()
    }

    /// Best effort: without it allocation only restarts from the range's start, so a failure
    /// here must not fail (or half-undo) an ADD whose lease is already written. Overwritten in
    /// place at a fixed width, never truncated: ext4 flushes a file truncated to zero when it
    /// is closed (`auto_da_alloc`), which cost ~3 ms per ADD here.
    fn write_last(&self, address: Ipv4Addr) {
        let write = || -> io::Result<()> {
            let mut file = OpenOptions::new().create(true).truncate(false).write(true).mode(0o644).open(self.dir.join(LAST_FILE))?;
            file.write_all(format!("{address:<15}\n").as_bytes())
        };
        let _ = write();
    }
}

/// A lease file is far below `MAX_FILE` bytes (an ID of 256, a pod of 512), so one read()
/// gets it all: 3 syscalls a file instead of `fs::read`'s 5, for a scan that reads every
/// lease on every ADD and DEL. `None` for anything longer or not UTF-8: not a v1 lease.
fn read_small(path: &Path) -> io::Result<Option<String>> {
    let mut buffer = [0u8; MAX_FILE];
    let mut file = File::open(path)?;
    let length = loop {
        match file.read(&mut buffer) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    if length == MAX_FILE {
        return Ok(None);
    }
    Ok(std::str::from_utf8(&buffer[..length]).ok().map(str::to_string))
}

/// Gone is success: DEL and GC are idempotent.
fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(context("remove", path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// A store in a fresh temp folder, removed on drop (also when an assertion fails).
    struct TempStore {
        base: PathBuf,
        store: LeaseStore,
    }

    impl TempStore {
        fn new(tag: &str) -> TempStore {
            let base = std::env::temp_dir().join(format!("smarter-cni-ipam-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&base);
            TempStore { store: LeaseStore::new(base.join("mynet").join("leases")), base }
        }
    }

    impl Drop for TempStore {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.base);
        }
    }

    impl std::ops::Deref for TempStore {
        type Target = LeaseStore;
        fn deref(&self) -> &LeaseStore {
            &self.store
        }
    }

    fn net(text: &str) -> Ipv4Net {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    /// 10.9.0.0/29: hosts .1-.6; .1 is the gateway, .2 node DNS, so .3-.6 are for pods.
    fn tiny_pool() -> Pool {
        Pool { subnet: net("10.9.0.0/29"), range: None, reserved: vec![ip("10.9.0.1"), ip("10.9.0.2")] }
    }

    fn key(id: &str) -> LeaseKey {
        LeaseKey::new(id, "eth0")
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn tiny_pool_skips_network_broadcast_gateway_and_reserved_then_reports_exhaustion() {
        let store = TempStore::new("tiny");
        let pool = tiny_pool();
        let got: Vec<_> = (0..4).map(|i| store.allocate(&pool, &key(&format!("c{i}")), None).unwrap().0.address).collect();
        assert_eq!(got, ["10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"].map(ip));
        let err = store.allocate(&pool, &key("c4"), None).unwrap_err();
        assert!(matches!(err, IpamError::Exhausted { leases: 4, .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "no free address in 10.9.0.0/29: 4 leases; check `smarter-cni status` for leases of pods that are gone"
        );
        assert_eq!(store.lookup(&key("c4")).unwrap(), None, "a failed allocation leaves nothing");
        let names: HashSet<_> = fs::read_dir(store.dir()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        let expected: HashSet<String> = [".lock", ".last", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"].map(String::from).into();
        assert_eq!(names, expected, "no staging file left, no network/broadcast/gateway/DNS lease");
    }

    #[test]
    fn range_limits_the_pool_and_must_be_inside_the_subnet() {
        let store = TempStore::new("range");
        // The upper /30 of 10.9.0.0/29 is .4-.7: .7 is the subnet broadcast, so .4-.6.
        let pool = Pool { range: Some(net("10.9.0.4/30")), ..tiny_pool() };
        let got: Vec<_> = (0..3).map(|i| store.allocate(&pool, &key(&format!("r{i}")), None).unwrap().0.address).collect();
        assert_eq!(got, ["10.9.0.4", "10.9.0.5", "10.9.0.6"].map(ip));
        let err = store.allocate(&pool, &key("r3"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no free address in 10.9.0.0/29 (range 10.9.0.4/30): 3 leases; check `smarter-cni status` for leases of pods that are gone"
        );
        let outside = Pool { range: Some(net("10.9.1.0/30")), ..tiny_pool() };
        let err = store.allocate(&outside, &key("r4"), None).unwrap_err();
        assert!(matches!(&err, IpamError::Invalid(m) if m == "ipRange 10.9.1.0/30 is not inside subnet 10.9.0.0/29"), "{err:?}");
    }

    #[test]
    fn same_key_gets_the_same_address_and_the_file_reads_well() {
        let store = TempStore::new("same");
        let pool = tiny_pool();
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let (first, new) = store.allocate(&pool, &LeaseKey::new(id, "eth0"), Some("default/web-0")).unwrap();
        assert!(new);
        let (again, new) = store.allocate(&pool, &LeaseKey::new(id, "eth0"), Some("default/web-0")).unwrap();
        assert!(!new, "a repeated ADD is not a new lease");
        assert_eq!(again, first);
        let (other_if, new) = store.allocate(&pool, &LeaseKey::new(id, "net1"), None).unwrap();
        assert!(new);
        assert_ne!(other_if.address, first.address, "another interface of the same sandbox is another attachment");
        assert_eq!(store.lookup(&LeaseKey::new(id, "eth0")).unwrap(), Some(first.clone()));

        let file = store.dir().join("10.9.0.3");
        assert_eq!(fs::read_to_string(&file).unwrap(), format!("# smarter-cni lease v1\ncontainer={id} ifname=eth0 pod=default/web-0\n"));
        assert_eq!(fs::read_to_string(store.dir().join("10.9.0.4")).unwrap(), format!("# smarter-cni lease v1\ncontainer={id} ifname=net1\n"));
        assert_eq!(mode(&file), 0o644);
        assert_eq!(mode(&store.dir().join(".lock")), 0o600);
        assert_eq!(mode(store.dir()), 0o755);
        assert_eq!(store.list().unwrap(), vec![first, other_if]);
    }

    #[test]
    fn release_frees_and_the_next_allocation_moves_on_round_robin() {
        let store = TempStore::new("release");
        let pool = tiny_pool();
        let a = store.allocate(&pool, &key("a"), None).unwrap().0.address;
        assert_eq!(store.release(&key("a")).unwrap(), Some(a));
        assert_eq!(store.release(&key("a")).unwrap(), None, "a repeated DEL succeeds");
        assert_eq!(store.lookup(&key("a")).unwrap(), None);
        let b = store.allocate(&pool, &key("b"), None).unwrap().0.address;
        assert_eq!((a, b), (ip("10.9.0.3"), ip("10.9.0.4")), "the address freed a moment ago is not reused at once");
        // The same key coming back after its DEL is a new attachment: it moves on too.
        let a2 = store.allocate(&pool, &key("a"), None).unwrap().0.address;
        assert_eq!(a2, ip("10.9.0.5"));
        let c = store.allocate(&pool, &key("c"), None).unwrap().0.address;
        assert_eq!(c, ip("10.9.0.6"));
        // Wraps around to the start of the range, skipping what is taken.
        let d = store.allocate(&pool, &key("d"), None).unwrap().0.address;
        assert_eq!(d, ip("10.9.0.3"));
        store.release(&key("a")).unwrap();
        assert_eq!(store.allocate(&pool, &key("e"), None).unwrap().0.address, ip("10.9.0.5"), "the only free one");
        // DEL on a node that never had a store is fine, and creates nothing.
        let never = LeaseStore::new(store.base.join("never"));
        assert_eq!(never.release(&key("a")).unwrap(), None);
        assert_eq!(never.reclaim(|_| false).unwrap(), vec![]);
        assert!(!store.base.join("never").exists());
    }

    #[test]
    fn reclaim_keeps_only_what_the_runtime_lists_and_clears_crash_leftovers() {
        let store = TempStore::new("reclaim");
        let pool = tiny_pool();
        for id in ["live", "gone1", "gone2"] {
            store.allocate(&pool, &key(id), Some(&format!("default/{id}"))).unwrap();
        }
        fs::write(store.dir().join("10.9.0.6"), "").unwrap(); // an unsynced write after a power cut
        fs::write(store.dir().join(".staging-999999"), "half").unwrap();
        assert_eq!(store.unreadable().unwrap(), vec![store.dir().join("10.9.0.6")]);
        let freed = store.reclaim(|l| l.key.container_id == "live").unwrap();
        let freed_ids: Vec<_> = freed.iter().map(|l| l.key.container_id.as_str()).collect();
        assert_eq!(freed_ids, ["gone1", "gone2"]);
        assert_eq!(freed[0].pod.as_deref(), Some("default/gone1"));
        let left: Vec<_> = store.list().unwrap().into_iter().map(|l| l.key.container_id).collect();
        assert_eq!(left, ["live"]);
        assert!(!store.dir().join("10.9.0.6").exists() && !store.dir().join(".staging-999999").exists());
        assert!(store.unreadable().unwrap().is_empty());
        assert_eq!(store.reclaim(|_| true).unwrap(), vec![], "nothing more to free");
    }

    #[test]
    fn files_of_an_unknown_format_are_kept_reported_and_never_handed_out() {
        let store = TempStore::new("unknown");
        let pool = tiny_pool();
        fs::create_dir_all(store.dir()).unwrap();
        let newer = "# smarter-cni lease v2\nholder=a-future-format\n";
        fs::write(store.dir().join("10.9.0.3"), newer).unwrap();
        fs::write(store.dir().join("10.9.0.5"), "# smarter-cni lease v1\ncontainer=../../etc ifname=eth0\n").unwrap();
        // Not named by a canonical address: not a lease, not counted, not touched.
        fs::write(store.dir().join("10.9.0.04"), "x").unwrap();
        fs::write(store.dir().join("notes"), "x").unwrap();
        let got: Vec<_> = (0..2).map(|i| store.allocate(&pool, &key(&format!("u{i}")), None).unwrap().0.address).collect();
        assert_eq!(got, ["10.9.0.4", "10.9.0.6"].map(ip));
        let err = store.allocate(&pool, &key("u2"), None).unwrap_err();
        assert!(err.to_string().contains(": 4 leases;"), "{err}");
        assert_eq!(store.unreadable().unwrap(), vec![store.dir().join("10.9.0.3"), store.dir().join("10.9.0.5")]);
        assert_eq!(store.list().unwrap().len(), 2);
        assert_eq!(store.reclaim(|_| false).unwrap().len(), 2);
        assert_eq!(fs::read_to_string(store.dir().join("10.9.0.3")).unwrap(), newer, "kept as it was");
        assert!(store.dir().join("10.9.0.5").exists() && store.dir().join("10.9.0.04").exists() && store.dir().join("notes").exists());
        assert_eq!(store.allocate(&pool, &key("u3"), None).unwrap().0.address, ip("10.9.0.4"));
    }

    #[test]
    fn hostile_ids_ifnames_and_pods_are_refused_before_any_file() {
        let store = TempStore::new("hostile");
        let pool = tiny_pool();
        let bad_keys = [
            LeaseKey::new("../escape", "eth0"),
            LeaseKey::new("", "eth0"),
            LeaseKey::new("a/b", "eth0"),
            LeaseKey::new("ok\ncontainer=evil", "eth0"),
            LeaseKey::new("ok", ""),
            LeaseKey::new("ok", "eth0/../x"),
            LeaseKey::new("ok", "sixteen-chars-xx"),
            LeaseKey::new("ok", "eth 0"),
            LeaseKey::new("ok", "eth0\npod=x"),
            LeaseKey::new("ok", ".."),
            LeaseKey::new("ok", "eth:0"),
        ];
        for bad in &bad_keys {
            assert!(matches!(store.allocate(&pool, bad, None), Err(IpamError::Invalid(_))), "{bad:?}");
            assert_eq!(store.lookup(bad).unwrap_err().kind(), io::ErrorKind::InvalidInput, "{bad:?}");
            assert_eq!(store.release(bad).unwrap_err().kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        for pod in ["default/web 0", "default/web\ncontainer=x", ""] {
            assert!(matches!(store.allocate(&pool, &key("ok"), Some(pod)), Err(IpamError::Invalid(_))), "{pod:?}");
        }
        assert!(!store.dir().exists(), "nothing was created");
        assert!(is_ifname("eth0") && is_ifname("fifteen-chars-x"));
    }

    #[test]
    fn check_usable_creates_the_folder_and_says_what_is_wrong() {
        let store = TempStore::new("usable");
        store.check_usable().unwrap();
        assert_eq!(mode(store.dir()), 0o755);
        assert_eq!(mode(&store.dir().join(".lock")), 0o600);
        // Busy is still usable.
        let _held = store.lock().unwrap();
        store.check_usable().unwrap();
        fs::write(store.base.join("file"), "").unwrap();
        let blocked = LeaseStore::new(store.base.join("file").join("leases"));
        let err = blocked.check_usable().unwrap_err();
        assert!(err.starts_with(&format!("the address store {} cannot be created: ", blocked.dir().display())), "{err}");
        assert!(matches!(blocked.allocate(&tiny_pool(), &key("x"), None), Err(IpamError::Io(_))));
    }

    #[test]
    fn fifty_threads_get_fifty_distinct_addresses() {
        let store = TempStore::new("threads");
        let pool = Pool { subnet: net("10.9.0.0/26"), range: None, reserved: vec![ip("10.9.0.1")] };
        let barrier = std::sync::Barrier::new(50);
        let addresses: Vec<Ipv4Addr> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..50)
                .map(|i| {
                    let (store, pool, barrier) = (&*store, &pool, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        store.allocate(pool, &key(&format!("thread{i}")), None).unwrap().0.address
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let distinct: HashSet<_> = addresses.iter().collect();
        assert_eq!(distinct.len(), 50, "{addresses:?}");
        assert_eq!(store.list().unwrap().len(), 50);
    }

    const CHILD_DIR: &str = "SMARTER_CNI_IPAM_TEST_CHILD_DIR";
    const CHILD_ID: &str = "SMARTER_CNI_IPAM_TEST_CHILD_ID";
    const CHILD_GO: &str = "SMARTER_CNI_IPAM_TEST_CHILD_GO";

    fn process_pool() -> Pool {
        Pool { subnet: net("10.9.0.0/26"), range: None, reserved: vec![ip("10.9.0.1")] }
    }

    /// Not a test of its own: the body of each child process of
    /// `fifty_processes_get_fifty_distinct_addresses` (this test binary, run again).
    #[test]
    #[ignore = "child process of fifty_processes_get_fifty_distinct_addresses"]
    fn child_allocates_one_address() {
        let (Ok(dir), Ok(id), Ok(go)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_ID), std::env::var(CHILD_GO)) else {
            return;
        };
        // Wait for the start signal so that all children allocate at the same moment.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !Path::new(&go).exists() {
            assert!(Instant::now() < deadline, "no start signal");
            std::thread::sleep(Duration::from_millis(1));
        }
        let (lease, new) = LeaseStore::new(dir).allocate(&process_pool(), &key(&id), Some("default/child")).unwrap();
        assert!(new);
        println!("ADDRESS={id}={}", lease.address);
    }

    #[test]
    fn fifty_processes_get_fifty_distinct_addresses() {
        let store = TempStore::new("processes");
        fs::create_dir_all(&store.base).unwrap();
        let go = store.base.join("go");
        let exe = std::env::current_exe().unwrap();
        let children: Vec<_> = (0..50)
            .map(|i| {
                Command::new(&exe)
                    .args(["--exact", "mode::bridge::ipam::tests::child_allocates_one_address", "--ignored", "--nocapture", "--test-threads=1"])
                    .env(CHILD_DIR, store.dir())
                    .env(CHILD_ID, format!("proc{i}"))
                    .env(CHILD_GO, &go)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        fs::write(&go, "").unwrap();
        let mut addresses = Vec::new();
        for child in children {
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "child failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
            let line = stdout.lines().find_map(|l| l.split_once("ADDRESS=").map(|(_, rest)| rest)).unwrap_or_else(|| panic!("no address in {stdout}"));
            let (id, address) = line.split_once('=').unwrap();
            addresses.push((id.to_string(), ip(address)));
        }
        let distinct: HashSet<_> = addresses.iter().map(|(_, a)| *a).collect();
        assert_eq!(distinct.len(), 50, "{addresses:?}");
        // What each child printed is what the store holds.
        let mut on_disk: Vec<_> = store.list().unwrap().into_iter().map(|l| (l.key.container_id, l.address)).collect();
        on_disk.sort();
        addresses.sort();
        assert_eq!(on_disk, addresses);
        assert!(addresses.iter().all(|(_, a)| process_pool().is_assignable(*a)));
    }

    #[test]
    fn allocate_release_timing() {
        let store = TempStore::new("timing");
        let pool = Pool { subnet: net("172.38.0.0/16"), range: Some(net("172.38.128.0/17")), reserved: vec![ip("172.38.0.1")] };
        let measure = |store: &LeaseStore| {
            let mut times: Vec<Duration> = (0..1000)
                .map(|_| {
                    let started = Instant::now();
                    let (lease, _) = store.allocate(&pool, &key("timing"), Some("default/timing")).unwrap();
                    assert_eq!(store.release(&key("timing")).unwrap(), Some(lease.address));
                    started.elapsed()
                })
                .collect();
            times.sort();
            (times[500], times[950])
        };
        let (median, p95) = measure(&store);
        println!("ipam allocate+release, empty store: median {median:?}, p95 {p95:?}");
        for i in 0..50 {
            store.allocate(&pool, &key(&format!("pod{i}")), None).unwrap();
        }
        let (median, p95) = measure(&store);
        println!("ipam allocate+release, 50 leases: median {median:?}, p95 {p95:?}");
        assert_eq!(store.list().unwrap().len(), 50);
    }
}

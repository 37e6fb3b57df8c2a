//! The pod's hostname in bridge mode. containerd passes no hostname to CNI, but its CRI
//! plugin writes `<cri root>/sandboxes/<sandbox id>/hostname` (the hostname and a newline;
//! the sandbox id is `CNI_CONTAINERID`): containerd 1.7 before CNI ADD, so ADD reads it at
//! once ([`sandbox_hostname`]); 2.x after ADD returns and before the sandbox's first process
//! starts, so the node service `smarter-cni hostnames` ([`run`]) watches for it with
//! inotify and adds the name to the record ADD wrote. Nothing polls the runtime.
//!
//! The service watches the sandboxes folder (new sandbox folders), each sandbox folder (its
//! `hostname` file) and the records folder (a record written after the hostname file, e.g.
//! containerd 1.7 when ADD ran just before the file appeared to the service). Every event
//! ends in the same idempotent step, [`Watcher::reconcile`]: record exists, hostname file
//! valid, name missing → `RecordStore::add_names`, which never brings back a removed record.

use crate::cni::env::is_container_id;
use crate::dns::names::{is_dns_label, PodNames};
use crate::dns::records::RecordStore;
use crate::log;
use std::collections::{BTreeSet, HashMap};
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// k3s's embedded containerd: `<containerd root>/io.containerd.grpc.v1.cri/sandboxes`.
pub const DEFAULT_SANDBOX_DIR: &str = "/var/lib/rancher/k3s/agent/containerd/io.containerd.grpc.v1.cri/sandboxes";

const HOSTNAME_FILE: &str = "hostname";
/// A label (63 bytes) and its newline; anything longer is not a hostname.
const MAX_HOSTNAME_FILE: usize = 64;

const SANDBOXES_MASK: u32 = libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_MOVE_SELF | libc::IN_DELETE_SELF | libc::IN_ONLYDIR;
const SANDBOX_MASK: u32 = libc::IN_CLOSE_WRITE | libc::IN_MOVED_TO | libc::IN_MOVE_SELF | libc::IN_ONLYDIR | libc::IN_DONT_FOLLOW;
const RECORDS_MASK: u32 = libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE | libc::IN_MOVE_SELF | libc::IN_DELETE_SELF | libc::IN_ONLYDIR;
/// On the nearest existing parent of a folder that does not exist yet.
const ANCESTOR_MASK: u32 = libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_ONLYDIR | libc::IN_MASK_ADD;

/// The hostname containerd wrote for sandbox `sandbox_id`, lowercased, when it is a valid
/// RFC 1123 label. Reads at most 64 bytes from a regular file named `hostname` directly
/// inside `<sandbox_dir>/<sandbox_id>`, following no symlink on the way (the id is checked
/// first); anything else (missing, half written, hostile) is `None`.
pub fn sandbox_hostname(sandbox_dir: &Path, sandbox_id: &str) -> Option<String> {
    read_hostname(sandbox_dir, sandbox_id).map(|(name, _)| name)
}

/// The hostname and when its file was last written.
fn read_hostname(sandbox_dir: &Path, sandbox_id: &str) -> Option<(String, SystemTime)> {
    if !is_container_id(sandbox_id) {
        return None;
    }
    let root = open_at(None, sandbox_dir.as_os_str().as_bytes(), libc::O_DIRECTORY)?;
    let sandbox = open_at(Some(root.as_fd()), sandbox_id.as_bytes(), libc::O_DIRECTORY | libc::O_NOFOLLOW)?;
    // O_NONBLOCK: a FIFO named `hostname` must not hang the service; fstat rejects it below.
    let file = open_at(Some(sandbox.as_fd()), HOSTNAME_FILE.as_bytes(), libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)?;
    let mut file = File::from(file);
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_HOSTNAME_FILE as u64 {
        return None;
    }
    let mut bytes = Vec::with_capacity(MAX_HOSTNAME_FILE + 1);
    (&mut file).take(MAX_HOSTNAME_FILE as u64 + 1).read_to_end(&mut bytes).ok()?;
    Some((parse_hostname_file(&bytes)?, meta.modified().ok()?))
}

/// containerd writes `hostname + "\n"` in one write; the newline is required, so a file
/// read while being written is never taken for a shorter name.
fn parse_hostname_file(bytes: &[u8]) -> Option<String> {
    if bytes.len() > MAX_HOSTNAME_FILE {
        return None;
    }
    let name = std::str::from_utf8(bytes).ok()?.strip_suffix('\n')?.to_ascii_lowercase();
    is_dns_label(&name).then_some(name)
}

/// `openat(2)` read-only with close-on-exec; `None` on any error.
fn open_at(dir: Option<BorrowedFd<'_>>, name: &[u8], flags: libc::c_int) -> Option<OwnedFd> {
    let name = CString::new(name).ok()?;
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: a valid C string and descriptor; the returned descriptor is owned here.
    let fd = unsafe { libc::openat(dirfd, name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC | flags) };
    // SAFETY: `fd` is a new descriptor nobody else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The node service: learns every sandbox's hostname and adds it (with its `dns.domain`
/// twin) to the sandbox's record. Waits for folders that do not exist yet (containerd may
/// start later) by watching their nearest existing parent. Returns only on an error.
pub fn run(sandbox_dir: &Path, records: &RecordStore, domain: Option<&str>) -> io::Result<()> {
    Watcher::new(sandbox_dir, records.clone(), domain)?.run(None)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Watch {
    Sandboxes,
    Records,
    Sandbox(String),
    /// A parent of a folder that is missing.
    Ancestor,
}

/// The service's state: one inotify instance and what each watch descriptor stands for.
pub struct Watcher {
    inotify: OwnedFd,
    sandbox_dir: PathBuf,
    records: RecordStore,
    domain: Option<String>,
    watches: HashMap<i32, Watch>,
    /// Whether a full reconcile is due (start, a watched folder (re)appeared, queue overflow).
    resync: bool,
    warned_no_space: bool,
    /// Folders already reported as awaited, so a busy parent does not repeat the line.
    awaited: Vec<PathBuf>,
}

impl Watcher {
    pub fn new(sandbox_dir: &Path, records: RecordStore, domain: Option<&str>) -> io::Result<Watcher> {
        // SAFETY: plain syscall; the descriptor is owned below.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("cannot start inotify: {e} (raise fs.inotify.max_user_instances)")));
        }
        Ok(Watcher {
            // SAFETY: a new descriptor nobody else owns.
            inotify: unsafe { OwnedFd::from_raw_fd(fd) },
            sandbox_dir: sandbox_dir.to_path_buf(),
            records,
            domain: domain.map(str::to_string),
            watches: HashMap::new(),
            resync: true,
            warned_no_space: false,
            awaited: Vec::new(),
        })
    }

    /// Arms the watches and reconciles once: after this returns, no change is missed.
    fn prepare(&mut self) -> io::Result<()> {
        loop {
            self.arm_missing()?;
            if !std::mem::take(&mut self.resync) {
                return Ok(());
            }
            self.reconcile_all();
            // A folder may have gone (or come) while reconciling; arm again before blocking.
        }
    }

    /// Processes events until `stop` (an eventfd or pipe) becomes readable, or forever.
    pub fn run(&mut self, stop: Option<BorrowedFd<'_>>) -> io::Result<()> {
        log::info(&format!(
            "hostnames: watching {} for sandbox hostnames, records in {}",
            self.sandbox_dir.display(),
            self.records.dir().display()
        ));
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            self.prepare()?;
            let mut fds = [
                libc::pollfd { fd: self.inotify.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: stop.map_or(-1, |s| s.as_raw_fd()), events: libc::POLLIN, revents: 0 },
            ];
            // SAFETY: two valid pollfd entries (a negative fd is ignored by poll).
            if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if fds[1].revents != 0 {
                return Ok(());
            }
            // SAFETY: reads into a buffer of the given length.
            let len = unsafe { libc::read(self.inotify.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if len < 0 {
                let e = io::Error::last_os_error();
                if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) {
                    continue;
                }
                return Err(e);
            }
            self.handle(&buf[..len as usize]);
        }
    }

    /// One batch of events: ids to reconcile are collected first, so a burst costs one
    /// reconcile per sandbox.
    fn handle(&mut self, mut events: &[u8]) {
        let mut due: BTreeSet<String> = BTreeSet::new();
        const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
        while events.len() >= HEADER {
            let word = |at: usize| u32::from_ne_bytes(events[at..at + 4].try_into().unwrap());
            let (wd, mask, name_len) = (word(0) as i32, word(4), word(12) as usize);
            let name_bytes = &events[HEADER..(HEADER + name_len).min(events.len())];
            let name = std::str::from_utf8(name_bytes.split(|b| *b == 0).next().unwrap_or_default()).unwrap_or("");
            events = &events[(HEADER + name_len).min(events.len())..];
            if mask & libc::IN_Q_OVERFLOW != 0 {
                log::warn("hostnames: inotify queue overflowed; checking every sandbox (raise fs.inotify.max_queued_events if this repeats)");
                self.resync = true;
                continue;
            }
            let Some(watch) = self.watches.get(&wd).cloned() else { continue };
            if mask & libc::IN_IGNORED != 0 {
                // The folder is gone (or the watch was removed): forget the descriptor.
                self.watches.remove(&wd);
                continue;
            }
            if mask & (libc::IN_MOVE_SELF | libc::IN_DELETE_SELF | libc::IN_UNMOUNT) != 0 {
                // Moved away: the watch would follow the folder to its new name. IN_IGNORED follows.
                // SAFETY: plain syscall on our inotify descriptor.
                unsafe { libc::inotify_rm_watch(self.inotify.as_raw_fd(), wd) };
                self.watches.remove(&wd);
                continue;
            }
            match watch {
                Watch::Sandboxes if mask & libc::IN_ISDIR != 0 && is_container_id(name) => {
                    self.watch_sandbox(name);
                    // The file may already be there: written before the watch existed.
                    due.insert(name.to_string());
                }
                Watch::Sandbox(id) if name == HOSTNAME_FILE => {
                    due.insert(id);
                }
                Watch::Records if is_container_id(name) => {
                    due.insert(name.to_string());
                }
                _ => {}
            }
        }
        for id in due {
            self.reconcile(&id);
        }
    }

    fn armed(&self, role: &Watch) -> bool {
        self.watches.values().any(|w| w == role)
    }

    /// Watches the sandboxes and records folders, or, for one that does not exist, its
    /// nearest existing parent (whose IN_CREATE brings us back here). Ancestor watches that
    /// are still needed stay as they are: removing and re-adding one on every pass would
    /// queue an IN_IGNORED each time and wake the loop forever.
    fn arm_missing(&mut self) -> io::Result<()> {
        let targets = [
            (Watch::Sandboxes, self.sandbox_dir.clone(), SANDBOXES_MASK),
            (Watch::Records, self.records.dir().to_path_buf(), RECORDS_MASK),
        ];
        let mut waiting_on = Vec::new();
        for (role, path, mask) in targets {
            if self.armed(&role) {
                continue;
            }
            match self.arm(&path, mask, role)? {
                None => self.resync = true,
                Some(ancestor) => waiting_on.push(ancestor),
            }
        }
        let stale: Vec<i32> =
            self.watches.iter().filter(|(wd, w)| **w == Watch::Ancestor && !waiting_on.contains(wd)).map(|(wd, _)| *wd).collect();
        for wd in stale {
            // SAFETY: plain syscall on our inotify descriptor.
            unsafe { libc::inotify_rm_watch(self.inotify.as_raw_fd(), wd) };
            self.watches.remove(&wd);
        }
        Ok(())
    }

    /// `None` when `path` itself is now watched, else the watch on its nearest existing parent.
    fn arm(&mut self, path: &Path, mask: u32, role: Watch) -> io::Result<Option<i32>> {
        loop {
            match add_watch(self.inotify.as_raw_fd(), path, mask) {
                Ok(wd) => {
                    self.watches.insert(wd, role);
                    self.awaited.retain(|p| p != path);
                    return Ok(None);
                }
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err(watch_error(path, e)),
            }
            let mut ancestor = path;
            let (parent, wd) = loop {
                let Some(parent) = ancestor.parent().filter(|p| !p.as_os_str().is_empty()) else {
                    return Err(io::Error::new(io::ErrorKind::NotFound, format!("no parent of {} exists", path.display())));
                };
                match add_watch(self.inotify.as_raw_fd(), parent, ANCESTOR_MASK) {
                    Ok(wd) => break (parent, wd),
                    Err(e) if is_missing(&e) => ancestor = parent,
                    Err(e) => return Err(watch_error(parent, e)),
                }
            };
            self.watches.entry(wd).or_insert(Watch::Ancestor);
            // The next folder may have been made between the two calls: then try again.
            if !ancestor.is_dir() {
                if !self.awaited.iter().any(|p| p == path) {
                    log::info(&format!("hostnames: waiting for {} to exist (watching {})", path.display(), parent.display()));
                    self.awaited.push(path.to_path_buf());
                }
                return Ok(Some(wd));
            }
        }
    }

    /// Watches one sandbox folder for its hostname file; never follows a symlink.
    fn watch_sandbox(&mut self, id: &str) {
        match add_watch(self.inotify.as_raw_fd(), &self.sandbox_dir.join(id), SANDBOX_MASK) {
            Ok(wd) => {
                self.watches.insert(wd, Watch::Sandbox(id.to_string()));
            }
            // Gone again, or not a folder (a symlink): nothing to learn there.
            Err(e) if is_missing(&e) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                if !std::mem::replace(&mut self.warned_no_space, true) {
                    log::warn(&format!(
                        "hostnames: cannot watch sandbox {}: {e}; raise fs.inotify.max_user_watches \
                         (its hostname is still learned when its record is written or at restart)",
                        crate::plugin::short(id)
                    ));
                }
            }
            Err(e) => log::warn(&format!("hostnames: cannot watch sandbox {}: {e}", crate::plugin::short(id))),
        }
    }

    /// Watches every sandbox folder and brings every record up to date.
    fn reconcile_all(&mut self) {
        if self.armed(&Watch::Sandboxes) {
            if let Ok(entries) = std::fs::read_dir(&self.sandbox_dir) {
                for entry in entries.flatten() {
                    let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
                    if let Some(id) = entry.file_name().to_str().filter(|id| is_dir && is_container_id(id)) {
                        self.watch_sandbox(id);
                    }
                }
            }
        }
        match self.records.list() {
            Ok(records) => {
                for record in records {
                    self.reconcile(&record.attachment_id);
                }
            }
            Err(e) => log::warn(&format!("hostnames: cannot list records in {}: {e}", self.records.dir().display())),
        }
    }

    /// Record exists, hostname file valid, name missing → add it. Idempotent.
    fn reconcile(&mut self, id: &str) {
        let record = match self.records.read(id) {
            Ok(Some(record)) => record,
            Ok(None) => return,
            Err(e) => {
                log::warn(&format!("hostnames: cannot read the record of sandbox {}: {e}", crate::plugin::short(id)));
                return;
            }
        };
        let Some((hostname, written)) = read_hostname(&self.sandbox_dir, id) else { return };
        let names = PodNames::new(Some(&hostname), None, None, self.domain.as_deref()).names;
        if names.iter().all(|n| record.names.contains(n)) {
            return;
        }
        match self.records.add_names(id, &names) {
            Ok(true) => {
                let late = SystemTime::now().duration_since(written).unwrap_or(Duration::ZERO);
                log::info(&format!(
                    "hostnames: sandbox={} pod={} hostname={hostname} added to its record {:.1} ms after the runtime wrote it",
                    crate::plugin::short(id),
                    record.pod.as_deref().unwrap_or("-"),
                    late.as_secs_f64() * 1000.0
                ));
            }
            // Removed meanwhile (DEL): it stays removed.
            Ok(false) => {}
            Err(e) => log::warn(&format!("hostnames: cannot add {hostname:?} to the record of sandbox {}: {e}", crate::plugin::short(id))),
        }
    }
}

fn add_watch(inotify: RawFd, path: &Path, mask: u32) -> io::Result<i32> {
    let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid C string and our inotify descriptor.
    let wd = unsafe { libc::inotify_add_watch(inotify, path.as_ptr(), mask) };
    if wd < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(wd)
    }
}

/// Not there (yet), or not a folder (IN_ONLYDIR, IN_DONT_FOLLOW on a symlink).
fn is_missing(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR))
}

fn watch_error(path: &Path, e: io::Error) -> io::Error {
    let hint = if e.raw_os_error() == Some(libc::ENOSPC) { " (raise fs.inotify.max_user_watches)" } else { "" };
    io::Error::new(e.kind(), format!("cannot watch {}: {e}{hint}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::records::Record;
    use std::fs;
    use std::net::Ipv4Addr;
    use std::os::unix::fs::symlink;
    use std::sync::{Arc, Barrier};
    use std::time::Instant;

    /// Generous bound for the service to react (a failure bound, not a speed check).
    const PATIENCE: Duration = Duration::from_secs(10);

    /// A temporary CRI root and records folder; removed on drop.
    struct Dirs {
        base: PathBuf,
        sandboxes: PathBuf,
        store: RecordStore,
    }

    impl Dirs {
        fn new(tag: &str) -> Dirs {
            let base = std::env::temp_dir().join(format!("smarter-cni-hostnames-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&base);
            fs::create_dir_all(&base).unwrap();
            let sandboxes = base.join("io.containerd.grpc.v1.cri/sandboxes");
            let store = RecordStore::new(base.join("mynet/hosts"));
            Dirs { base, sandboxes, store }
        }

        /// Both folders made, as on a node where containerd and `setup` already ran.
        fn made(tag: &str) -> Dirs {
            let dirs = Dirs::new(tag);
            fs::create_dir_all(&dirs.sandboxes).unwrap();
            dirs.store.ensure_dirs().unwrap();
            dirs
        }

        /// What ADD writes: pod name and `<pod>.<namespace>`, no hostname.
        fn add(&self, id: &str, n: u16) {
            let pod = format!("pod-{n}");
            let record = Record {
                attachment_id: id.into(),
                container: id.into(),
                address: Ipv4Addr::new(172, 38, (n >> 8) as u8, n as u8),
                pod: Some(format!("default/{pod}")),
                names: vec![pod.clone(), format!("{pod}.default")],
            };
            self.store.write(&record).unwrap();
        }

        /// What containerd's CRI plugin does: MkdirAll, then os.WriteFile(hostname + "\n").
        fn containerd_writes(&self, id: &str, hostname: &str) {
            fs::create_dir_all(self.sandboxes.join(id)).unwrap();
            fs::write(self.sandboxes.join(id).join("hostname"), format!("{hostname}\n")).unwrap();
        }

        fn names(&self, id: &str) -> Option<Vec<String>> {
            self.store.read(id).unwrap().map(|r| r.names)
        }

        /// Waits, by inotify on the records folder, until `id`'s names satisfy `ok`.
        fn wait_names(&self, id: &str, ok: impl Fn(Option<&Vec<String>>) -> bool) -> Option<Vec<String>> {
            let watch = RecordsWatch::new(self.store.dir());
            let deadline = Instant::now() + PATIENCE;
            loop {
                let names = self.names(id);
                if ok(names.as_ref()) {
                    return names;
                }
                if !watch.wait(deadline) {
                    return None;
                }
            }
        }

        fn wait_hostname(&self, id: &str, hostname: &str) -> Vec<String> {
            self.wait_names(id, |n| n.is_some_and(|n| n.iter().any(|x| x == hostname)))
                .unwrap_or_else(|| panic!("record {id} never got {hostname:?}: {:?}", self.names(id)))
        }

        /// Runs the service on its own thread until dropped.
        fn service(&self, domain: Option<&str>) -> Service {
            Service::start(Watcher::new(&self.sandboxes, self.store.clone(), domain).unwrap())
        }
    }

    impl Drop for Dirs {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.base);
        }
    }

    /// The test's own inotify watch on the records folder, to wait without polling.
    struct RecordsWatch(OwnedFd);

    impl RecordsWatch {
        fn new(dir: &Path) -> RecordsWatch {
            // SAFETY: plain syscalls; the descriptor is owned.
            let fd = unsafe { OwnedFd::from_raw_fd(libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK)) };
            add_watch(fd.as_raw_fd(), dir, libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE | libc::IN_DELETE).unwrap();
            RecordsWatch(fd)
        }

        /// `false` when the deadline passed without an event.
        fn wait(&self, deadline: Instant) -> bool {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut fd = libc::pollfd { fd: self.0.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut fd, 1, left.as_millis() as i32) } > 0;
            let mut buf = [0u8; 4096];
            // SAFETY: drains the queue into a local buffer.
            while unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
            ready
        }
    }

    /// The service on a thread, stopped through an eventfd on drop.
    struct Service {
        stop: Arc<OwnedFd>,
        inotify: RawFd,
        /// The service thread's kernel task ID, for its CPU time.
        tid: i32,
        thread: Option<std::thread::JoinHandle<io::Result<()>>>,
    }

    impl Service {
        fn start(mut watcher: Watcher) -> Service {
            // Armed and reconciled before the test goes on, as when the unit has started.
            watcher.prepare().unwrap();
            // SAFETY: plain syscall; the descriptor is owned.
            let stop = Arc::new(unsafe { OwnedFd::from_raw_fd(libc::eventfd(0, libc::EFD_CLOEXEC)) });
            let inotify = watcher.inotify.as_raw_fd();
            let stop_fd = stop.clone();
            let (tid_tx, tid_rx) = std::sync::mpsc::channel();
            let thread = std::thread::spawn(move || {
                // SAFETY: plain syscall.
                tid_tx.send(unsafe { libc::gettid() }).unwrap();
                watcher.run(Some(stop_fd.as_fd()))
            });
            Service { stop, inotify, tid: tid_rx.recv().unwrap(), thread: Some(thread) }
        }

        /// CPU time the service thread has used, in clock ticks (utime + stime).
        fn cpu_ticks(&self) -> u64 {
            let stat = fs::read_to_string(format!("/proc/self/task/{}/stat", self.tid)).unwrap();
            let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
            fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
        }

        /// Watches the kernel holds for the service (from /proc: the real state, not ours).
        fn kernel_watches(&self) -> usize {
            let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", self.inotify)).unwrap();
            info.lines().filter(|l| l.starts_with("inotify wd:")).count()
        }

        fn stop(mut self) -> io::Result<()> {
            self.signal();
            self.thread.take().unwrap().join().unwrap()
        }

        fn signal(&self) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes to our eventfd.
            unsafe { libc::write(self.stop.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    impl Drop for Service {
        fn drop(&mut self) {
            if let Some(thread) = self.thread.take() {
                self.signal();
                let _ = thread.join();
            }
        }
    }

    fn id(tag: &str, n: usize) -> String {
        format!("{tag}{n:04}{}", "0".repeat(52))
    }

    /// The folders vanish under the running service (containerd's state wiped, /run
    /// cleared): it must wait on their parent quietly, not spin, and pick them up again.
    #[test]
    fn vanished_folders_are_awaited_without_spinning() {
        let dirs = Dirs::made("vanish");
        let service = dirs.service(None);
        fs::remove_dir_all(&dirs.base).unwrap();
        let before = service.cpu_ticks();
        std::thread::sleep(Duration::from_millis(500));
        let used = service.cpu_ticks() - before;
        // A loop that re-arms its watches on every wakeup burns all 50 ticks of these 0.5 s.
        assert!(used <= 5, "the service used {used} clock ticks in 0.5 s while waiting");
        fs::create_dir_all(&dirs.sandboxes).unwrap();
        dirs.store.ensure_dirs().unwrap();
        let sandbox = id("vani", 0);
        dirs.add(&sandbox, 1);
        dirs.containerd_writes(&sandbox, "back");
        dirs.wait_hostname(&sandbox, "back");
        service.stop().unwrap();
    }

    #[test]
    fn hostname_file_rules() {
        assert_eq!(parse_hostname_file(b"example\n").as_deref(), Some("example"));
        assert_eq!(parse_hostname_file(b"Sensor-1\n").as_deref(), Some("sensor-1"));
        let longest = format!("{}\n", "a".repeat(63));
        assert_eq!(parse_hostname_file(longest.as_bytes()).as_deref(), Some(&longest[..63]));
        for bad in [
            &b"example"[..],
            b"\n",
            b"",
            b"bad_host\n",
            b"a b\n",
            b"x\n127.0.0.1 evil\n",
            b"web.default\n",
            b"-web\n",
            b"caf\xc3\xa9\n",
            b"\xff\n",
            b"example\n\n",
        ] {
            assert_eq!(parse_hostname_file(bad), None, "{bad:?}");
        }
        assert_eq!(parse_hostname_file(format!("{}\n", "a".repeat(64)).as_bytes()), None);
    }

    #[test]
    fn sandbox_hostname_follows_no_symlink_and_reads_little() {
        let dirs = Dirs::made("hostile");
        let elsewhere = dirs.base.join("elsewhere");
        fs::create_dir_all(&elsewhere).unwrap();
        fs::write(elsewhere.join("hostname"), "evil\n").unwrap();
        let (good, link_file, link_dir, fifo, huge, folder) =
            (id("good", 0), id("lnkf", 0), id("lnkd", 0), id("fifo", 0), id("huge", 0), id("fold", 0));
        dirs.containerd_writes(&good, "example");
        fs::create_dir_all(dirs.sandboxes.join(&link_file)).unwrap();
        symlink(elsewhere.join("hostname"), dirs.sandboxes.join(&link_file).join("hostname")).unwrap();
        symlink(&elsewhere, dirs.sandboxes.join(&link_dir)).unwrap();
        fs::create_dir_all(dirs.sandboxes.join(&fifo)).unwrap();
        let fifo_path = CString::new(dirs.sandboxes.join(&fifo).join("hostname").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo_path.as_ptr(), 0o644) }, 0);
        fs::create_dir_all(dirs.sandboxes.join(&huge)).unwrap();
        fs::write(dirs.sandboxes.join(&huge).join("hostname"), format!("{}\n", "a".repeat(1 << 20))).unwrap();
        fs::create_dir_all(dirs.sandboxes.join(&folder).join("hostname")).unwrap();

        assert_eq!(sandbox_hostname(&dirs.sandboxes, &good).as_deref(), Some("example"));
        for hostile in [&link_file, &link_dir, &fifo, &huge, &folder, &id("none", 0)] {
            assert_eq!(sandbox_hostname(&dirs.sandboxes, hostile), None, "{hostile}");
        }
        // Ids are checked before they reach a path.
        fs::write(dirs.base.join("io.containerd.grpc.v1.cri/hostname"), "evil\n").unwrap();
        for bad_id in ["..", ".", "", "../sandboxes/x", "a/b"] {
            assert_eq!(sandbox_hostname(&dirs.sandboxes, bad_id), None, "{bad_id:?}");
        }
    }

    #[test]
    fn containerd_2x_order_record_first_then_hostname_file() {
        let dirs = Dirs::made("v2order");
        let service = dirs.service(Some("gw.local"));
        let sandbox = id("v2", 1);
        dirs.add(&sandbox, 1);
        // ADD found no file (2.x writes it later).
        assert_eq!(sandbox_hostname(&dirs.sandboxes, &sandbox), None);
        dirs.containerd_writes(&sandbox, "example");
        let names = dirs.wait_hostname(&sandbox, "example");
        assert_eq!(names, vec!["example", "example.gw.local", "pod-1", "pod-1.default"]);
        // A repeated ADD rewrites the record; the service puts the hostname back.
        dirs.add(&sandbox, 1);
        assert_eq!(dirs.wait_hostname(&sandbox, "example"), names);
        service.stop().unwrap();
    }

    #[test]
    fn containerd_17_order_hostname_file_first_then_record() {
        let dirs = Dirs::made("v17order");
        // A sandbox from before the service started: learned at start.
        let early = id("early", 0);
        dirs.containerd_writes(&early, "early");
        dirs.add(&early, 2);
        let service = dirs.service(None);
        assert_eq!(dirs.names(&early).unwrap(), vec!["early", "pod-2", "pod-2.default"], "reconciled at start");
        // File first, record after (ADD read the folder just before the file was there).
        let late = id("v17", 1);
        dirs.containerd_writes(&late, "example");
        // The service saw the file but has no record to update yet; no record may appear.
        let probe = id("probe", 0);
        dirs.add(&probe, 3);
        dirs.containerd_writes(&probe, "probe");
        dirs.wait_hostname(&probe, "probe");
        assert_eq!(dirs.names(&late), None, "a hostname alone never makes a record");
        dirs.add(&late, 1);
        assert_eq!(dirs.wait_hostname(&late, "example"), vec!["example", "pod-1", "pod-1.default"]);
        service.stop().unwrap();
    }

    #[test]
    fn waits_for_folders_that_do_not_exist_yet() {
        let dirs = Dirs::new("late-dirs");
        let service = dirs.service(None);
        assert!(!dirs.sandboxes.exists() && !dirs.store.dir().exists());
        // `setup` makes the records folder; containerd its root, then its sandboxes folder.
        dirs.store.ensure_dirs().unwrap();
        fs::create_dir_all(dirs.sandboxes.parent().unwrap()).unwrap();
        fs::create_dir(&dirs.sandboxes).unwrap();
        let sandbox = id("late", 1);
        dirs.add(&sandbox, 1);
        dirs.containerd_writes(&sandbox, "example");
        dirs.wait_hostname(&sandbox, "example");
        // containerd's state wiped and made again (e.g. reinstalled): still watched.
        fs::remove_dir_all(dirs.sandboxes.parent().unwrap()).unwrap();
        let again = id("again", 1);
        dirs.add(&again, 2);
        dirs.containerd_writes(&again, "again");
        dirs.wait_hostname(&again, "again");
        service.stop().unwrap();
    }

    #[test]
    fn hostile_hostname_files_are_ignored() {
        let dirs = Dirs::made("hostile-svc");
        let service = dirs.service(None);
        let elsewhere = dirs.base.join("elsewhere");
        fs::create_dir_all(&elsewhere).unwrap();
        fs::write(elsewhere.join("hostname"), "evil\n").unwrap();
        let ids: Vec<String> = (0..5).map(|n| id("bad", n)).collect();
        for (n, sandbox) in ids.iter().enumerate() {
            dirs.add(sandbox, n as u16);
        }
        dirs.containerd_writes(&ids[0], &"a".repeat(64));
        dirs.containerd_writes(&ids[1], "x 127.0.0.1 evil");
        dirs.containerd_writes(&ids[2], "bad_host");
        fs::create_dir_all(dirs.sandboxes.join(&ids[3])).unwrap();
        symlink(elsewhere.join("hostname"), dirs.sandboxes.join(&ids[3]).join("hostname")).unwrap();
        symlink(&elsewhere, dirs.sandboxes.join(&ids[4])).unwrap();
        // Events are handled in order: once this one is done, the hostile ones were seen.
        let sentinel = id("sentinel", 0);
        dirs.add(&sentinel, 9);
        dirs.containerd_writes(&sentinel, "fine");
        dirs.wait_hostname(&sentinel, "fine");
        for (n, sandbox) in ids.iter().enumerate() {
            assert_eq!(dirs.names(sandbox).unwrap(), vec![format!("pod-{n}"), format!("pod-{n}.default")], "{sandbox}");
        }
        service.stop().unwrap();
    }

    #[test]
    fn del_racing_the_hostname_never_brings_the_record_back() {
        let dirs = Dirs::made("delrace-svc");
        let service = dirs.service(None);
        let ids: Vec<String> = (0..200).map(|n| id("race", n)).collect();
        for (n, sandbox) in ids.iter().enumerate() {
            dirs.add(sandbox, n as u16);
            let start = Barrier::new(2);
            std::thread::scope(|s| {
                s.spawn(|| {
                    start.wait();
                    dirs.containerd_writes(sandbox, "example");
                });
                s.spawn(|| {
                    start.wait();
                    dirs.store.remove(sandbox).unwrap();
                });
            });
        }
        let sentinel = id("sentinel", 0);
        dirs.add(&sentinel, 999);
        dirs.containerd_writes(&sentinel, "fine");
        dirs.wait_hostname(&sentinel, "fine");
        let left: Vec<&String> = ids.iter().filter(|id| dirs.store.dir().join(id).exists()).collect();
        assert!(left.is_empty(), "DEL undone for {left:?}");
        service.stop().unwrap();
    }

    #[test]
    fn many_sandboxes_at_once_and_their_watches_go_with_them() {
        let dirs = Dirs::made("many");
        let service = dirs.service(None);
        let before = service.kernel_watches();
        assert_eq!(before, 2, "the sandboxes and records folders");
        let ids: Vec<String> = (0..200).map(|n| id("many", n)).collect();
        let shared = &dirs;
        std::thread::scope(|s| {
            for chunk in ids.chunks(25) {
                s.spawn(move || {
                    let dirs = shared;
                    for sandbox in chunk {
                        let n: u16 = sandbox[4..8].parse().unwrap();
                        dirs.add(sandbox, n);
                        dirs.containerd_writes(sandbox, &format!("host-{n}"));
                    }
                });
            }
        });
        for sandbox in &ids {
            let n: u16 = sandbox[4..8].parse().unwrap();
            dirs.wait_hostname(sandbox, &format!("host-{n}"));
        }
        assert_eq!(service.kernel_watches(), 2 + 200);
        // RemovePodSandbox: containerd removes the folder, DEL the record.
        for sandbox in &ids {
            fs::remove_dir_all(dirs.sandboxes.join(sandbox)).unwrap();
            dirs.store.remove(sandbox).unwrap();
        }
        let sentinel = id("sentinel", 0);
        dirs.add(&sentinel, 999);
        dirs.containerd_writes(&sentinel, "fine");
        dirs.wait_hostname(&sentinel, "fine");
        assert_eq!(service.kernel_watches(), 2 + 1, "watches of removed sandboxes are gone");
        assert!(dirs.store.list().unwrap().len() == 1);
        service.stop().unwrap();
    }

    #[test]
    fn queue_overflow_reconciles_everything() {
        let dirs = Dirs::made("overflow");
        let mut watcher = Watcher::new(&dirs.sandboxes, dirs.store.clone(), None).unwrap();
        watcher.prepare().unwrap();
        // Fill the kernel's queue for this instance while the service is busy (not reading):
        // alternating names, so the kernel cannot merge the events.
        let limit: usize = fs::read_to_string("/proc/sys/fs/inotify/max_queued_events").unwrap().trim().parse().unwrap();
        for n in 0..limit + 10 {
            fs::write(dirs.store.dir().join(if n % 2 == 0 { "flood-a" } else { "flood-b" }), "x").unwrap();
        }
        // These events are lost: only IN_Q_OVERFLOW tells the service something happened.
        let sandbox = id("lost", 1);
        dirs.add(&sandbox, 1);
        dirs.containerd_writes(&sandbox, "example");
        let service = Service::start(watcher);
        dirs.wait_hostname(&sandbox, "example");
        service.stop().unwrap();
    }

    /// Prints (asserts nothing about time): how long from containerd writing the hostname
    /// file to the record holding the name, over 200 sandboxes one after another, as in
    /// 2.x (record first). Run alone for clean numbers:
    /// `cargo test --lib mode::bridge::hostnames::tests::measure -- --nocapture --test-threads=1`
    #[test]
    fn measure_hostname_latency() {
        let dirs = Dirs::made("measure");
        let service = dirs.service(None);
        let mut samples = Vec::new();
        for n in 0..200 {
            let sandbox = id("meas", n);
            dirs.add(&sandbox, n as u16);
            let watch = RecordsWatch::new(dirs.store.dir());
            fs::create_dir_all(dirs.sandboxes.join(&sandbox)).unwrap();
            let written = Instant::now();
            fs::write(dirs.sandboxes.join(&sandbox).join("hostname"), format!("host-{n}\n")).unwrap();
            let deadline = written + PATIENCE;
            let host = format!("host-{n}");
            while !dirs.names(&sandbox).is_some_and(|names| names.contains(&host)) {
                assert!(watch.wait(deadline), "{sandbox} never got {host}");
            }
            samples.push(written.elapsed());
        }
        service.stop().unwrap();
        let (median, p95, max) = stats(&mut samples);
        eprintln!("hostname file written -> record has the name, 200 sandboxes: median {median:.3} ms, p95 {p95:.3} ms, max {max:.3} ms");
    }

    fn stats(samples: &mut [Duration]) -> (f64, f64, f64) {
        samples.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let at = |q: f64| ms(samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1]);
        (at(0.5), at(0.95), ms(*samples.last().unwrap()))
    }

    /// The whole path with a real dnsmasq reading the records folder (`hostsdir=`, as
    /// shipped): the hostname written by "containerd" after ADD becomes resolvable.
    #[test]
    fn real_dnsmasq_answers_the_learned_hostname() {
        let dirs = Dirs::made("dnsmasq");
        let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut dnsmasq = DnsmasqGuard(
            std::process::Command::new("dnsmasq")
                .args(["--keep-in-foreground", "--no-resolv", "--no-hosts", "--listen-address=127.0.0.1", "--bind-interfaces"])
                .args(["--pid-file=", "--local=//", "--local-ttl=0", "--user=root"])
                .arg(format!("--port={port}"))
                .arg(format!("--hostsdir={}", dirs.store.dir().display()))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("dnsmasq (dnsmasq-base)"),
        );
        let server = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let ask = |name: &str| crate::dns::query::query_a(server, name, Duration::from_millis(200));
        let service = dirs.service(None);
        let mut samples = Vec::new();
        for n in 0..20u16 {
            let sandbox = id("dns", n as usize);
            dirs.add(&sandbox, n + 2);
            let address = Ipv4Addr::new(172, 38, 0, n as u8 + 2);
            // Up before the hostname exists: the pod name answers already.
            let deadline = Instant::now() + PATIENCE;
            while ask(&format!("pod-{}", n + 2)).ok() != Some(crate::dns::query::Answer::Addresses(vec![address])) {
                assert!(Instant::now() < deadline && dnsmasq.0.try_wait().unwrap().is_none(), "dnsmasq never answered the pod name");
            }
            let host = format!("host-{n}");
            assert!(!matches!(ask(&host), Ok(crate::dns::query::Answer::Addresses(_))), "{host} answered before it was written");
            fs::create_dir_all(dirs.sandboxes.join(&sandbox)).unwrap();
            let written = Instant::now();
            fs::write(dirs.sandboxes.join(&sandbox).join("hostname"), format!("{host}\n")).unwrap();
            // Test-side retries: dnsmasq's reload is its own, asynchronous.
            while ask(&host).ok() != Some(crate::dns::query::Answer::Addresses(vec![address])) {
                assert!(written.elapsed() < PATIENCE, "dnsmasq never answered {host}");
                std::thread::sleep(Duration::from_micros(500));
            }
            samples.push(written.elapsed());
        }
        service.stop().unwrap();
        let (median, p95, max) = stats(&mut samples);
        eprintln!("hostname file written -> dnsmasq answers it, 20 sandboxes: median {median:.3} ms, p95 {p95:.3} ms, max {max:.3} ms");
    }

    struct DnsmasqGuard(std::process::Child);

    impl Drop for DnsmasqGuard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

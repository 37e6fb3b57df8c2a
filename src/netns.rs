//! Network namespace identity: two paths name the same namespace when the nsfs inode
//! (and device) behind them are equal. Used to find the sandbox behind `CNI_NETNS` when the
//! runtime's container ID is not a Docker ID (libcni's cnitool).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamespaceId {
    dev: u64,
    ino: u64,
}

impl NamespaceId {
    /// Follows the path (a `/proc/<pid>/ns/net` link or a bind-mounted netns file).
    pub fn of(path: &Path) -> io::Result<NamespaceId> {
        let meta = std::fs::metadata(path)?;
        Ok(NamespaceId { dev: meta.dev(), ino: meta.ino() })
    }

    /// The network namespace of a process.
    pub fn of_pid(pid: u32) -> io::Result<NamespaceId> {
        Self::of(Path::new(&format!("/proc/{pid}/ns/net")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_process_same_namespace() {
        let me = NamespaceId::of_pid(std::process::id()).unwrap();
        assert_eq!(me, NamespaceId::of(Path::new("/proc/self/ns/net")).unwrap());
        assert_ne!(me, NamespaceId::of(Path::new("/proc/self/ns/mnt")).unwrap());
        assert!(NamespaceId::of(Path::new("/proc/999999999/ns/net")).is_err());
    }
}

/// Moves the calling thread into the network namespace at `path`. The plugin process is
/// single-threaded and exits right after, so there is no way back to arrange.
pub fn enter(path: &Path) -> io::Result<()> {
    let file = std::fs::File::open(path)?;
    // SAFETY: setns on a descriptor we own; CLONE_NEWNET checks that it is a net namespace.
    let rc = unsafe { libc::setns(std::os::unix::io::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `struct ifreq` with the flags member of its union; sized for 64-bit (40 bytes), which
/// also covers 32-bit kernels (32 bytes).
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// A datagram socket in the current namespace, only for interface ioctls.
struct IoctlSocket(libc::c_int);

impl IoctlSocket {
    fn open() -> io::Result<IoctlSocket> {
        // SAFETY: plain socket(2); the descriptor is owned by the returned value.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(IoctlSocket(fd))
    }

    fn flags(&self, ifname: &str) -> io::Result<IfReqFlags> {
        if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"));
        }
        let mut req = IfReqFlags { name: [0; libc::IFNAMSIZ], flags: 0, _pad: [0; 22] };
        req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
        // SAFETY: req is a valid, writable ifreq for SIOCGIFFLAGS.
        if unsafe { libc::ioctl(self.0, libc::SIOCGIFFLAGS as _, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(req)
    }

    fn set_flags(&self, req: &IfReqFlags) -> io::Result<()> {
        // SAFETY: req is a valid ifreq for SIOCSIFFLAGS.
        if unsafe { libc::ioctl(self.0, libc::SIOCSIFFLAGS as _, req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for IoctlSocket {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and not used after this.
        unsafe { libc::close(self.0) };
    }
}

const IFF_UP: libc::c_short = libc::IFF_UP as libc::c_short;

/// Sets or clears IFF_UP on an interface of the current network namespace.
pub fn set_link_up(ifname: &str, up: bool) -> io::Result<()> {
    let socket = IoctlSocket::open()?;
    let mut req = socket.flags(ifname)?;
    if (req.flags & IFF_UP != 0) == up {
        return Ok(());
    }
    req.flags = if up { req.flags | IFF_UP } else { req.flags & !IFF_UP };
    socket.set_flags(&req)
}

/// Whether an interface of the current namespace is up (an ioctl: no sysfs needed).
pub fn is_link_up(ifname: &str) -> io::Result<bool> {
    Ok(IoctlSocket::open()?.flags(ifname)?.flags & IFF_UP != 0)
}

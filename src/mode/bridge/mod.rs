//! Bridge mode: the plugin owns the pod network (containerd and other libcni runtimes).
//! `link` is the kernel's links, addresses and routes (rtnetlink), `ipam` the address store,
//! `nat` forwarding, masquerade and hostPorts (nftables), `hostnames` the node service that
//! learns each sandbox's hostname from the runtime.

pub mod hostnames;
pub mod ipam;
pub mod link;
pub mod nat;

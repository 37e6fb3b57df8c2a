//! The pod network modes: two implementations of one seam (attach / detach / check / list a
//! pod). `docker` hands the pod to a Docker user network; `bridge` owns a Linux bridge,
//! veth pairs, addresses and NAT itself, for containerd and any other libcni runtime.

pub mod bridge;

//! The pod network modes: two implementations of one seam, [`PodNetwork`] (attach / detach /
//! check / list a pod). `docker` hands the pod to a Docker user network; `bridge` owns a
//! Linux bridge, veth pairs, addresses and NAT itself, for containerd and any other libcni
//! runtime. The CNI verbs (`crate::plugin`) and the node commands use only this seam.

pub mod bridge;
pub mod docker;

use crate::cni::{Call, CniError, InterfaceResult};
use crate::dns::names::PodNames;
use crate::dns::records::Record;

/// What a mode did for ADD; the shared verb then writes the DNS record.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub interface: InterfaceResult,
    /// The object the record points at (the Docker container, or the sandbox ID).
    pub container: String,
    pub names: PodNames,
    /// This ADD made the attachment (rather than finding it from an earlier ADD), so a
    /// later failure of the same ADD must undo it.
    pub fresh: bool,
}

/// One pod attachment a mode knows of, for GC and `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The runtime's ID (`CNI_CONTAINERID`) when the mode knows it.
    pub attachment_id: Option<String>,
    /// The object the mode attached (Docker container ID, or the sandbox ID).
    pub container: String,
}

/// The seam. Errors are CNI errors with the right code; `check` returns the problems found.
#[allow(async_fn_in_trait)] // used with static dispatch only
pub trait PodNetwork {
    /// ADD: the pod's interface and address, and its names.
    async fn attach(&self, call: &Call) -> Result<Attachment, CniError>;
    /// Undoes a fresh `attach` after a later step of the same ADD failed. Best effort.
    async fn undo(&self, call: &Call, attachment: &Attachment);
    /// DEL: succeeds when the attachment is gone, whatever was left of it.
    async fn detach(&self, call: &Call, record: Option<&Record>) -> Result<(), CniError>;
    /// CHECK: what differs from what ADD left (empty when nothing does).
    async fn check(&self, call: &Call) -> Result<Vec<String>, CniError>;
    /// Every attachment this mode made that still holds something on the node.
    async fn list(&self) -> Result<Vec<Attached>, CniError>;
    /// GC: releases an attachment the runtime no longer lists. Ok(false) if nothing was held.
    async fn release(&self, attached: &Attached) -> Result<bool, CniError>;
    /// STATUS: whether ADD can work now.
    async fn ready(&self) -> Result<(), CniError>;
}

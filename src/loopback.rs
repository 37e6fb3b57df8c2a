//! The CNI `loopback` plugin, built in: cri-dockerd runs `/opt/cni/bin/loopback` before the
//! pod network, and shipping the reference plugin set costs 45 MB on a gateway.

use crate::cni::{code, Call, CniError, Dns, InterfaceResult, Plugin};
use crate::netns;
use std::net::Ipv4Addr;
use std::path::Path;

pub struct Loopback;

const LO: &str = "lo";

fn enter(call: &Call) -> Result<(), CniError> {
    netns::enter(Path::new(&call.env.netns)).map_err(|e| {
        CniError::new(code::INVALID_ENVIRONMENT, format!("cannot enter network namespace {}: {e}", call.env.netns))
    })
}

impl Plugin for Loopback {
    fn add(&self, call: &Call) -> Result<InterfaceResult, CniError> {
        enter(call)?;
        netns::set_link_up(LO, true).map_err(|e| CniError::io(format!("cannot bring {LO} up: {e}")))?;
        Ok(InterfaceResult {
            ifname: LO.to_string(),
            mac: Some("00:00:00:00:00:00".to_string()),
            sandbox: call.env.netns.clone(),
            address: Ipv4Addr::LOCALHOST,
            prefix_len: 8,
            gateway: None,
            default_route: false,
            dns: Dns::default(),
        })
    }

    /// Best effort: a namespace that is gone (or never given) has nothing to undo.
    fn del(&self, call: &Call) -> Result<(), CniError> {
        if call.env.netns.is_empty() || netns::enter(Path::new(&call.env.netns)).is_err() {
            return Ok(());
        }
        netns::set_link_up(LO, false).map_err(|e| CniError::io(format!("cannot bring {LO} down: {e}")))?;
        Ok(())
    }

    fn check(&self, call: &Call) -> Result<(), CniError> {
        enter(call)?;
        match netns::is_link_up(LO) {
            Ok(true) => Ok(()),
            Ok(false) => Err(CniError::new(code::ATTACHMENT_MISMATCH, format!("{LO} is down in {}", call.env.netns))),
            Err(e) => Err(CniError::io(format!("cannot read {LO} flags: {e}"))),
        }
    }

    fn gc(&self, _call: &Call) -> Result<(), CniError> {
        Ok(())
    }

    fn status(&self, _call: &Call) -> Result<(), CniError> {
        Ok(())
    }
}

//! Bridge mode: the plugin owns the pod network (containerd and other libcni runtimes).
//! `link` is the kernel's links, addresses and routes (rtnetlink), `ipam` the address store,
//! `nat` forwarding, masquerade and hostPorts (nftables), `hostnames` the node service that
//! learns each sandbox's hostname from the runtime, `node` the node commands' part.
//!
//! One attachment = one lease (container ID + interface) = one veth pair whose host end's
//! name is derived from the same two, so DEL finds everything without the pod's netns.

pub mod hostnames;
pub mod ipam;
pub mod link;
pub mod nat;
pub mod node;

use crate::cni::{code, Call, CniError, Dns, InterfaceResult};
use crate::config::{is_interface_name, PluginConfig};
use crate::dns::records::Record;
use crate::mode::{Attached, Attachment, PodNetwork};
use crate::plugin::{pod_names, short};
use ipam::{IpamError, Lease, LeaseKey, LeaseStore, Pool};
use nat::{NatNet, Owner, PortMapping};
use std::io;
use std::path::Path;

pub struct BridgeMode {
    config: PluginConfig,
}

impl BridgeMode {
    pub fn new(config: &PluginConfig) -> BridgeMode {
        BridgeMode { config: config.clone() }
    }
}

/// The address pool: the subnet (or `ipRange`) without the gateway and node DNS.
pub fn pool(config: &PluginConfig) -> Pool {
    let mut reserved = vec![config.gateway];
    reserved.extend(config.reserved_addresses());
    if !reserved.contains(&config.dns.address) {
        reserved.push(config.dns.address);
    }
    Pool { subnet: config.subnet, range: config.ip_range, reserved }
}

pub fn leases(config: &PluginConfig) -> LeaseStore {
    LeaseStore::new(&config.bridge.leases_dir)
}

/// The NAT rules' view of the network. The configuration already validated both names.
pub fn nat_net(config: &PluginConfig) -> Result<NatNet, CniError> {
    NatNet::new(&config.network, &config.bridge.name, config.subnet).map_err(CniError::invalid_config)
}

fn kernel_error(what: String, err: io::Error) -> CniError {
    CniError::new(code::ENGINE_FAILURE, what).with_details(err.to_string())
}

fn ipam_error(err: IpamError) -> CniError {
    match err {
        IpamError::Io(e) => CniError::io(format!("address store: {e}")),
        IpamError::Invalid(msg) => CniError::invalid_env(msg),
        other => CniError::new(code::ENGINE_FAILURE, other.to_string()),
    }
}

fn require_ifname(ifname: &str) -> Result<(), CniError> {
    if is_interface_name(ifname) {
        return Ok(());
    }
    Err(CniError::invalid_env(format!("CNI_IFNAME={ifname:?} is not an interface name (1 to 15 letters, digits, '_', '.', '-')")))
}

/// The runtime's `portMappings` capability (`runtimeConfig.portMappings`).
fn requested_ports(call: &Call) -> Result<Vec<PortMapping>, CniError> {
    match call.conf.raw.get("runtimeConfig").and_then(|rc| rc.get("portMappings")) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(list) => serde_json::from_value(list.clone())
            .map_err(|e| CniError::invalid_config(format!("runtimeConfig.portMappings: {e}"))),
    }
}

impl BridgeMode {
    fn key(&self, call: &Call) -> LeaseKey {
        LeaseKey { container_id: call.env.container_id.clone(), ifname: call.env.ifname.clone() }
    }

    fn owner(&self, call: &Call) -> Result<Owner, CniError> {
        let args = &call.env.args;
        let (namespace, pod) = (args.pod_namespace.as_deref().unwrap_or(""), args.pod_name.as_deref().unwrap_or(""));
        Owner::new(&call.env.container_id, namespace, pod).map_err(CniError::invalid_env)
    }

    /// The pod's interface: found as an earlier ADD left it (`false`), or made now (`true`).
    fn plug(&self, call: &Call, lease: &Lease) -> Result<(String, bool), CniError> {
        let config = &self.config;
        let netns = Path::new(&call.env.netns);
        let host = link::host_veth_name(&lease.key.container_id, &lease.key.ifname);
        let prefix = config.subnet.prefix_len;
        if let Ok(Some(inside)) = link::inspect_pod_interface(netns, &call.env.ifname) {
            let same = inside.ipv4.contains(&(lease.address, prefix)) && link::link_exists(&host).unwrap_or(false);
            if same {
                return Ok((inside.mac, false));
            }
            return Err(CniError::new(
                code::ENGINE_FAILURE,
                format!("{} already exists in {} with other addresses {:?}", call.env.ifname, call.env.netns, inside.ipv4),
            ));
        }
        // A host end without its pod end belongs to an earlier netns of this sandbox.
        let _ = link::delete_link(&host);
        let made = link::add_veth(&config.bridge.name, &host, netns, &call.env.ifname, lease.address, prefix, config.gateway)
            .map_err(|e| kernel_error(format!("cannot give the pod its interface {} ({}/{prefix})", call.env.ifname, lease.address), e))?;
        Ok((made.mac, true))
    }

    /// Everything an attachment holds, for one container ID (every interface when `ifname`
    /// is unknown). Gone parts are fine; a kernel refusing to remove one is an error.
    fn unplug(&self, container_id: &str, ifname: Option<&str>) -> Result<bool, CniError> {
        let store = leases(&self.config);
        let mut keys: Vec<LeaseKey> = store
            .list()
            .map_err(|e| CniError::io(format!("cannot list address leases: {e}")))?
            .into_iter()
            .map(|l| l.key)
            .filter(|k| k.container_id == container_id && ifname.is_none_or(|i| k.ifname == i))
            .collect();
        if let Some(ifname) = ifname.filter(|i| is_interface_name(i)) {
            let key = LeaseKey { container_id: container_id.to_string(), ifname: ifname.to_string() };
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let mut held = false;
        // hostPorts first: the kernel's wait after deleting map elements then overlaps the
        // veth's deletion.
        match nat::remove_port_mappings(&nat_net(&self.config)?, container_id) {
            Ok(removed) => held |= removed > 0,
            // No table, or no nf_tables at all: then ADD could not have added hostPorts either
            // (setup never ran, the rules were flushed, a kernel without nf_tables).
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::EPROTONOSUPPORT) => {}
            Err(e) => return Err(kernel_error(format!("cannot remove the hostPorts of {}", short(container_id)), e)),
        }
        for key in keys {
            let host = link::host_veth_name(&key.container_id, &key.ifname);
            held |= link::delete_link(&host).map_err(|e| kernel_error(format!("cannot delete {host}"), e))?;
            held |= store
                .release(&key)
                .map_err(|e| CniError::io(format!("cannot release the address lease of {}: {e}", short(container_id))))?
                .is_some();
        }
        Ok(held)
    }
}

impl PodNetwork for BridgeMode {
    async fn attach(&self, call: &Call) -> Result<Attachment, CniError> {
        let config = &self.config;
        require_ifname(&call.env.ifname)?;
        if call.env.netns.is_empty() {
            return Err(CniError::invalid_env("CNI_NETNS is empty: bridge mode needs the pod's network namespace"));
        }
        let ports = requested_ports(call)?;
        let nat = nat_net(config)?;
        let owner = self.owner(call)?;
        link::ensure_bridge(&config.bridge.name, config.gateway, config.subnet.prefix_len)
            .map_err(|e| kernel_error(format!("cannot set up bridge {} ({}/{})", config.bridge.name, config.gateway, config.subnet.prefix_len), e))?;
        let key = self.key(call);
        let pod = call.env.args.pod_ref();
        let (lease, new_lease) = leases(config).allocate(&pool(config), &key, pod.as_deref()).map_err(ipam_error)?;
        let undo_lease = || {
            if new_lease {
                let _ = leases(config).release(&key);
            }
        };
        let (mac, new_link) = match self.plug(call, &lease) {
            Ok(plugged) => plugged,
            Err(err) => {
                undo_lease();
                return Err(err);
            }
        };
        let fresh = new_lease || new_link;
        if !ports.is_empty() {
            if let Err(err) = nat::add_port_mappings(&nat, lease.address, &owner, &ports) {
                if fresh {
                    let _ = self.unplug(&key.container_id, Some(&key.ifname));
                }
                return Err(err.into());
            }
        }
        // containerd 1.7 writes the hostname before ADD; 2.x after (the hostnames service adds it).
        let hostname = hostnames::sandbox_hostname(&config.bridge.sandbox_dir, &call.env.container_id);
        let names = pod_names(config, call, hostname.as_deref());
        Ok(Attachment {
            interface: InterfaceResult {
                ifname: call.env.ifname.clone(),
                mac: Some(mac),
                sandbox: call.env.netns.clone(),
                address: lease.address,
                prefix_len: config.subnet.prefix_len,
                gateway: Some(config.gateway),
                default_route: true,
                dns: Dns { nameservers: vec![config.dns.address.to_string()], ..Dns::default() },
            },
            container: call.env.container_id.clone(),
            names,
            fresh,
        })
    }

    async fn undo(&self, call: &Call, _attachment: &Attachment) {
        let _ = self.unplug(&call.env.container_id, Some(&call.env.ifname));
    }

    async fn detach(&self, call: &Call, _record: Option<&Record>) -> Result<(), CniError> {
        let ifname = Some(call.env.ifname.as_str()).filter(|i| !i.is_empty());
        self.unplug(&call.env.container_id, ifname).map(|_| ())
    }

    async fn check(&self, call: &Call) -> Result<Vec<String>, CniError> {
        let config = &self.config;
        require_ifname(&call.env.ifname)?;
        let mut problems = Vec::new();
        if let Err(problem) = link::check_bridge(&config.bridge.name, config.gateway, config.subnet.prefix_len) {
            problems.push(problem);
        }
        let lease = leases(config).lookup(&self.key(call)).map_err(|e| CniError::io(format!("cannot read the address lease: {e}")))?;
        let Some(lease) = lease else {
            problems.push(format!("no address lease in {}", config.bridge.leases_dir.display()));
            return Ok(problems);
        };
        let expected = format!("{}/{}", lease.address, config.subnet.prefix_len);
        if let Some(prev) = call.conf.prev_result_ipv4() {
            if prev != expected {
                problems.push(format!("the lease is {expected} but prevResult says {prev}"));
            }
        }
        let host = link::host_veth_name(&lease.key.container_id, &lease.key.ifname);
        match link::bridge_ports(&config.bridge.name) {
            Ok(ports) if ports.contains(&host) => {}
            Ok(_) => problems.push(format!("the pod's host interface {host} is not on bridge {}", config.bridge.name)),
            Err(e) => problems.push(format!("cannot list the ports of bridge {}: {e}", config.bridge.name)),
        }
        match link::inspect_pod_interface(Path::new(&call.env.netns), &call.env.ifname) {
            Ok(None) => problems.push(format!("no {} in {}", call.env.ifname, call.env.netns)),
            Ok(Some(inside)) => {
                if !inside.up {
                    problems.push(format!("{} is down", call.env.ifname));
                }
                if !inside.ipv4.contains(&(lease.address, config.subnet.prefix_len)) {
                    problems.push(format!("{} has {:?}, not {expected}", call.env.ifname, inside.ipv4));
                }
                if inside.default_gateway != Some(config.gateway) {
                    problems.push(format!("the default route is via {:?}, not {}", inside.default_gateway, config.gateway));
                }
            }
            Err(e) => problems.push(format!("cannot inspect {} in {}: {e}", call.env.ifname, call.env.netns)),
        }
        Ok(problems)
    }

    async fn list(&self) -> Result<Vec<Attached>, CniError> {
        let leases = leases(&self.config).list().map_err(|e| CniError::io(format!("cannot list address leases: {e}")))?;
        let mut attached: Vec<Attached> = Vec::new();
        for lease in leases {
            let item = Attached { attachment_id: Some(lease.key.container_id.clone()), container: lease.key.container_id };
            if !attached.contains(&item) {
                attached.push(item);
            }
        }
        Ok(attached)
    }

    async fn release(&self, attached: &Attached) -> Result<bool, CniError> {
        self.unplug(&attached.container, None)
    }

    async fn ready(&self) -> Result<(), CniError> {
        let config = &self.config;
        let not_ready = |msg: String| CniError::new(code::PLUGIN_NOT_AVAILABLE, msg);
        // A missing bridge is fine: ADD creates it. Anything else in its way is not.
        if link::link_exists(&config.bridge.name).unwrap_or(false) {
            link::check_bridge(&config.bridge.name, config.gateway, config.subnet.prefix_len).map_err(not_ready)?;
        }
        leases(config).check_usable().map_err(|e| not_ready(format!("address store {}: {e}", config.bridge.leases_dir.display())))?;
        nat::check_base_ruleset(&nat_net(config)?).map_err(|e| not_ready(format!("{e}; run smarter-cni setup")))?;
        Ok(())
    }
}

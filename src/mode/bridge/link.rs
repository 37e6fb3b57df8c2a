//! (stub until the link branch lands)
#![allow(unused_variables, dead_code)]
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;

pub struct PodLink {
    pub mac: String,
    pub ifindex: u32,
}
pub struct PodInterface {
    pub mac: String,
    pub up: bool,
    pub ipv4: Vec<(Ipv4Addr, u8)>,
    pub default_gateway: Option<Ipv4Addr>,
}
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    todo!()
}
pub fn ensure_bridge(name: &str, gateway: Ipv4Addr, prefix_len: u8) -> io::Result<bool> {
    todo!()
}
pub fn check_bridge(name: &str, gateway: Ipv4Addr, prefix_len: u8) -> Result<(), String> {
    todo!()
}
pub fn add_veth(bridge: &str, host_name: &str, netns_path: &Path, ifname: &str, address: Ipv4Addr, prefix_len: u8, gateway: Ipv4Addr) -> io::Result<PodLink> {
    todo!()
}
pub fn delete_link(name: &str) -> io::Result<bool> {
    todo!()
}
pub fn inspect_pod_interface(netns_path: &Path, ifname: &str) -> io::Result<Option<PodInterface>> {
    todo!()
}
pub fn bridge_ports(bridge: &str) -> io::Result<Vec<String>> {
    todo!()
}
pub fn link_exists(name: &str) -> io::Result<bool> {
    todo!()
}

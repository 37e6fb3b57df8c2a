//! (stub until the nat branch lands)
#![allow(unused_variables, dead_code)]
use crate::ipv4::Ipv4Net;
use std::io;
use std::net::Ipv4Addr;

pub struct NatNet {
    pub network: String,
    pub subnet: Ipv4Net,
    pub bridge: String,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
    pub host_ip: Option<Ipv4Addr>,
}
impl PortMapping {
    pub fn parse_list(value: &serde_json::Value) -> Result<Vec<PortMapping>, String> {
        todo!()
    }
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub attachment_id: String,
    pub pod: Option<String>,
}
#[derive(Debug)]
pub enum NatError {
    Taken(String),
    Io(io::Error),
}
impl std::fmt::Display for NatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        todo!()
    }
}
pub fn base_ruleset(net: &NatNet) -> String {
    todo!()
}
pub fn load_base_ruleset(text: &str) -> io::Result<()> {
    todo!()
}
pub fn check_base_ruleset(net: &NatNet) -> Result<(), String> {
    todo!()
}
pub fn add_port_mappings(net: &NatNet, pod_address: Ipv4Addr, owner: &Owner, mappings: &[PortMapping]) -> Result<(), NatError> {
    todo!()
}
pub fn remove_port_mappings(net: &NatNet, attachment_id: &str) -> io::Result<usize> {
    todo!()
}
pub fn list_port_mappings(net: &NatNet) -> io::Result<Vec<(PortMapping, Ipv4Addr, Owner)>> {
    todo!()
}
pub fn ensure_forwarding() -> io::Result<()> {
    todo!()
}
pub fn forwarding_enabled() -> io::Result<bool> {
    todo!()
}

//! (stub until the ipam branch lands)
#![allow(unused_variables, dead_code)]
use crate::ipv4::Ipv4Net;
use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;

pub struct Pool {
    pub subnet: Ipv4Net,
    pub range: Option<Ipv4Net>,
    pub reserved: Vec<Ipv4Addr>,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseKey {
    pub container_id: String,
    pub ifname: String,
}
#[derive(Debug, Clone)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub key: LeaseKey,
    pub pod: Option<String>,
}
#[derive(Debug)]
pub enum IpamError {
    Exhausted(String),
    Invalid(String),
    Io(io::Error),
}
impl std::fmt::Display for IpamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        todo!()
    }
}
pub struct LeaseStore {
    dir: PathBuf,
}
impl LeaseStore {
    pub fn new(dir: impl Into<PathBuf>) -> LeaseStore {
        LeaseStore { dir: dir.into() }
    }
    pub fn allocate(&self, pool: &Pool, key: &LeaseKey, pod: Option<&str>) -> Result<(Lease, bool), IpamError> {
        todo!()
    }
    pub fn lookup(&self, key: &LeaseKey) -> io::Result<Option<Lease>> {
        todo!()
    }
    pub fn release(&self, key: &LeaseKey) -> io::Result<Option<Ipv4Addr>> {
        todo!()
    }
    pub fn list(&self) -> io::Result<Vec<Lease>> {
        todo!()
    }
    pub fn unreadable(&self) -> io::Result<Vec<PathBuf>> {
        todo!()
    }
    pub fn reclaim(&self, keep: impl Fn(&Lease) -> bool) -> io::Result<Vec<Lease>> {
        todo!()
    }
    pub fn check_usable(&self) -> Result<(), String> {
        todo!()
    }
}

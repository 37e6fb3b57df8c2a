//! DNS: the names a pod gets, the record files node DNS serves, and the pod's resolv.conf.

pub mod names;
pub mod query;
pub mod records;
pub mod resolv;

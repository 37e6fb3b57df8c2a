//! DNS: the names a pod gets, the record files node DNS serves, the names node DNS answers
//! itself, and the pod's resolv.conf.

pub mod domains;
pub mod names;
pub mod query;
pub mod records;
pub mod resolv;

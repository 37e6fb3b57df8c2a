//! The CNI protocol: environment, configuration, versions, results, errors and the
//! dispatcher. Knows nothing about Docker or DNS records.

pub mod config;
pub mod env;
pub mod error;
pub mod result;
pub mod skel;
pub mod version;

pub use config::NetConf;
pub use env::{CniArgs, CniEnv, Command};
pub use error::{code, CniError};
pub use result::{Dns, InterfaceResult};
pub use skel::{Call, Plugin, Report};
pub use version::SpecVersion;

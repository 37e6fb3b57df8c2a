//! (stub until the hostnames branch lands)
#![allow(unused_variables, dead_code)]
use std::path::Path;
pub fn sandbox_hostname(sandbox_dir: &Path, sandbox_id: &str) -> Option<String> {
    todo!()
}

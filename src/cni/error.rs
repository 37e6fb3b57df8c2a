//! CNI error values: the spec's well-known codes and the JSON shape runtimes read.

use serde::Serialize;
use std::fmt;

/// Error codes from the CNI spec (section "Error"); 100+ are this plugin's own.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENVIRONMENT: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    pub const PLUGIN_LIMITED_CONNECTIVITY: u32 = 51;
    /// The Docker engine refused or failed an operation.
    pub const ENGINE_FAILURE: u32 = 100;
    /// CHECK found the attachment different from what ADD set up.
    pub const ATTACHMENT_MISMATCH: u32 = 101;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError { code, msg: msg.into(), details: String::new() }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    pub fn invalid_env(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_ENVIRONMENT, msg)
    }

    pub fn invalid_config(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_NETWORK_CONFIG, msg)
    }

    pub fn io(msg: impl Into<String>) -> Self {
        Self::new(code::IO_FAILURE, msg)
    }

    /// The JSON document the spec wants on stdout, in the caller's version.
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        let wire = Wire { cni_version, code: self.code, msg: &self.msg, details: &self.details };
        serde_json::to_string(&wire).expect("error JSON always serializes")
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code)?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_numeric_code_and_omits_empty_details() {
        let json = CniError::invalid_env("CNI_NETNS is missing").to_json("1.0.0");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["code"], 4);
        assert_eq!(value["cniVersion"], "1.0.0");
        assert_eq!(value["msg"], "CNI_NETNS is missing");
        assert!(value.get("details").is_none());
    }

    #[test]
    fn details_are_kept() {
        let err = CniError::io("write failed").with_details("disk full");
        let value: serde_json::Value = serde_json::from_str(&err.to_json("0.4.0")).unwrap();
        assert_eq!(value["details"], "disk full");
        assert_eq!(err.to_string(), "write failed (code 5): disk full");
    }
}

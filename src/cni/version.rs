//! CNI spec versions: which ones this plugin speaks and what each allows.

use super::error::{code, CniError};

/// Every spec version whose results this plugin can produce, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The newest version: used where the caller named none.
pub const LATEST: &str = "1.1.0";

/// A spec version as (major, minor, patch), comparable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SpecVersion(pub u16, pub u16, pub u16);

impl SpecVersion {
    pub const V0_3_0: SpecVersion = SpecVersion(0, 3, 0);
    pub const V0_4_0: SpecVersion = SpecVersion(0, 4, 0);
    pub const V1_0_0: SpecVersion = SpecVersion(1, 0, 0);
    pub const V1_1_0: SpecVersion = SpecVersion(1, 1, 0);

    /// Parses a version this plugin supports; anything else is error code 1.
    pub fn parse_supported(text: &str) -> Result<SpecVersion, CniError> {
        if !SUPPORTED_VERSIONS.contains(&text) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!("cniVersion {text:?} is not supported"),
            )
            .with_details(format!("supported versions: {}", SUPPORTED_VERSIONS.join(", "))));
        }
        let mut parts = text.split('.').map(|p| p.parse::<u16>().unwrap_or(0));
        Ok(SpecVersion(
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
        ))
    }

    /// Results before 0.3.0 use the legacy `ip4`/`ip6` shape.
    pub fn has_legacy_result(self) -> bool {
        self < Self::V0_3_0
    }
}

/// The answer to VERSION; echoes the caller's version when it is one of ours.
pub fn version_info_json(requested: Option<&str>) -> String {
    let reply_version = match requested {
        Some(v) if SUPPORTED_VERSIONS.contains(&v) => v,
        _ => LATEST,
    };
    serde_json::json!({
        "cniVersion": reply_version,
        "supportedVersions": SUPPORTED_VERSIONS,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_and_legacy_shape() {
        let v020 = SpecVersion::parse_supported("0.2.0").unwrap();
        let v100 = SpecVersion::parse_supported("1.0.0").unwrap();
        assert!(v020 < v100);
        assert!(v020.has_legacy_result());
        assert!(!v100.has_legacy_result());
        assert!(SpecVersion::parse_supported("0.3.1").unwrap() > SpecVersion::V0_3_0);
    }

    #[test]
    fn unknown_version_is_code_1() {
        let err = SpecVersion::parse_supported("2.0.0").unwrap_err();
        assert_eq!(err.code, code::INCOMPATIBLE_VERSION);
        assert!(SpecVersion::parse_supported("").is_err());
        assert!(SpecVersion::parse_supported("1.0").is_err());
    }

    #[test]
    fn version_reply_lists_all_and_echoes_known_version() {
        let reply: serde_json::Value = serde_json::from_str(&version_info_json(Some("0.4.0"))).unwrap();
        assert_eq!(reply["cniVersion"], "0.4.0");
        assert_eq!(reply["supportedVersions"].as_array().unwrap().len(), SUPPORTED_VERSIONS.len());
        let reply: serde_json::Value = serde_json::from_str(&version_info_json(Some("9.9.9"))).unwrap();
        assert_eq!(reply["cniVersion"], LATEST);
    }
}

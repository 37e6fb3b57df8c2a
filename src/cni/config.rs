//! The network configuration a runtime passes on stdin: the fields every plugin shares.
//! Plugin-specific keys are parsed by the plugin from `raw`.

use super::error::{code, CniError};
use super::version::SpecVersion;
use serde::Deserialize;
use serde_json::Value;

/// One entry of GC's `cni.dev/valid-attachments`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ValidAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    #[serde(default)]
    pub ifname: String,
}

#[derive(Debug, Clone)]
pub struct NetConf {
    /// The version string as written: results and errors answer in it.
    pub cni_version: String,
    pub version: SpecVersion,
    pub name: String,
    pub plugin_type: String,
    pub prev_result: Option<Value>,
    pub valid_attachments: Option<Vec<ValidAttachment>>,
    pub raw: Value,
}

impl NetConf {
    pub fn parse(bytes: &[u8]) -> Result<NetConf, CniError> {
        let raw: Value = serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(code::DECODE_FAILURE, "network configuration on stdin is not valid JSON")
                .with_details(e.to_string())
        })?;
        let object = raw.as_object().ok_or_else(|| {
            CniError::new(code::DECODE_FAILURE, "network configuration on stdin is not a JSON object")
        })?;
        let text_field = |key: &str| -> Result<Option<String>, CniError> {
            match object.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(CniError::new(code::DECODE_FAILURE, format!("\"{key}\" must be a string"))),
            }
        };
        // libcni treats a configuration without cniVersion as 0.1.0.
        let cni_version = text_field("cniVersion")?.unwrap_or_else(|| "0.1.0".to_string());
        let version = SpecVersion::parse_supported(&cni_version)?;
        let name = text_field("name")?.unwrap_or_default();
        if name.is_empty() {
            return Err(CniError::invalid_config("network configuration has no \"name\""));
        }
        let plugin_type = text_field("type")?.unwrap_or_default();
        let valid_attachments = match object.get("cni.dev/valid-attachments") {
            None | Some(Value::Null) => None,
            Some(list) => Some(serde_json::from_value(list.clone()).map_err(|e| {
                CniError::new(code::DECODE_FAILURE, "\"cni.dev/valid-attachments\" is malformed")
                    .with_details(e.to_string())
            })?),
        };
        Ok(NetConf {
            cni_version,
            version,
            name,
            plugin_type,
            prev_result: object.get("prevResult").filter(|v| !v.is_null()).cloned(),
            valid_attachments,
            raw,
        })
    }

    /// The first IPv4 address of `prevResult`, in either result shape.
    pub fn prev_result_ipv4(&self) -> Option<String> {
        let prev = self.prev_result.as_ref()?;
        let address = prev
            .get("ips")
            .and_then(Value::as_array)
            .and_then(|ips| ips.iter().find_map(|ip| ip.get("address")?.as_str().filter(|a| !a.contains(':'))))
            .or_else(|| prev.get("ip4")?.get("ip")?.as_str())?;
        Some(address.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_conflist_plugin_entry() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"mynet","type":"smarter-cni","subnet":"172.38.0.0/16",
                 "prevResult":{"cniVersion":"1.0.0","ips":[{"address":"172.38.0.5/16"}]}}"#,
        )
        .unwrap();
        assert_eq!(conf.name, "mynet");
        assert_eq!(conf.version, SpecVersion::V1_0_0);
        assert_eq!(conf.prev_result_ipv4().as_deref(), Some("172.38.0.5/16"));
        assert_eq!(conf.raw["subnet"], "172.38.0.0/16");
    }

    #[test]
    fn parses_seed_config_and_legacy_prev_result() {
        let conf = NetConf::parse(br#"{"cniVersion":"0.2.0","name":"mynet","type":"smarter-cni","debug":true,
             "prevResult":{"ip4":{"ip":"172.38.0.9/16"}}}"#).unwrap();
        assert!(conf.version.has_legacy_result());
        assert_eq!(conf.prev_result_ipv4().as_deref(), Some("172.38.0.9/16"));
    }

    #[test]
    fn gc_attachments() {
        let conf = NetConf::parse(br#"{"cniVersion":"1.1.0","name":"n","type":"t",
             "cni.dev/valid-attachments":[{"containerID":"abc","ifname":"eth0"}]}"#).unwrap();
        assert_eq!(conf.valid_attachments.unwrap()[0].container_id, "abc");
    }

    #[test]
    fn bad_input_codes() {
        assert_eq!(NetConf::parse(b"{not json").unwrap_err().code, code::DECODE_FAILURE);
        assert_eq!(NetConf::parse(b"[1]").unwrap_err().code, code::DECODE_FAILURE);
        assert_eq!(NetConf::parse(br#"{"cniVersion":"7.0.0","name":"n"}"#).unwrap_err().code, code::INCOMPATIBLE_VERSION);
        assert_eq!(NetConf::parse(br#"{"cniVersion":"1.0.0"}"#).unwrap_err().code, code::INVALID_NETWORK_CONFIG);
        assert_eq!(NetConf::parse(br#"{"cniVersion":1,"name":"n"}"#).unwrap_err().code, code::DECODE_FAILURE);
    }
}

//! The CNI environment variables, read once and validated before anything is touched.

use super::error::CniError;
use crate::dns::names::{is_dns_label, is_dns_name};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Gc,
    Status,
}

impl Command {
    pub fn parse(text: &str) -> Result<Command, CniError> {
        Ok(match text {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            other => {
                return Err(CniError::invalid_env(format!(
                    "CNI_COMMAND={other:?} is not one of ADD, DEL, CHECK, VERSION, GC, STATUS"
                )))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Gc => "GC",
            Command::Status => "STATUS",
        }
    }

    /// ADD, DEL and CHECK act on one container's attachment.
    fn is_per_container(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }
}

/// Arguments from `CNI_ARGS` that this plugin understands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub pod_name: Option<String>,
    pub pod_namespace: Option<String>,
    pub pod_infra_container_id: Option<String>,
}

/// The longest `CNI_ARGS` accepted; real runtimes send a few hundred bytes.
const MAX_CNI_ARGS_LEN: usize = 4096;

impl CniArgs {
    /// `<namespace>/<pod>` (or just the pod) for logs and records.
    pub fn pod_ref(&self) -> Option<String> {
        match (&self.pod_namespace, &self.pod_name) {
            (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
            (None, Some(name)) => Some(name.clone()),
            _ => None,
        }
    }

    /// Parses `K=V;K=V`. Unknown keys are an error unless `IgnoreUnknown=1` (as libcni's
    /// reference plugins do); Kubernetes values must have Kubernetes' own shape, so nothing
    /// hostile can reach a DNS record or a Docker API path.
    pub fn parse(text: &str) -> Result<CniArgs, CniError> {
        if text.len() > MAX_CNI_ARGS_LEN {
            return Err(CniError::invalid_env(format!(
                "CNI_ARGS is {} bytes long, more than the {MAX_CNI_ARGS_LEN} accepted",
                text.len()
            )));
        }
        if let Some(bad) = text.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(CniError::invalid_env(format!(
                "CNI_ARGS contains the character {bad:?}; only printable ASCII without spaces is accepted"
            )));
        }
        let mut args = CniArgs::default();
        let mut ignore_unknown = false;
        let mut unknown = Vec::new();
        for pair in text.split(';').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                CniError::invalid_env(format!("CNI_ARGS entry {pair:?} is not of the form KEY=VALUE"))
            })?;
            match key {
                "IgnoreUnknown" => ignore_unknown = matches!(value, "1" | "true" | "True"),
                "K8S_POD_NAME" => args.pod_name = Some(checked_k8s_value(key, value, is_dns_name)?),
                "K8S_POD_NAMESPACE" => {
                    args.pod_namespace = Some(checked_k8s_value(key, value, is_dns_label)?)
                }
                "K8S_POD_INFRA_CONTAINER_ID" => {
                    args.pod_infra_container_id = Some(checked_k8s_value(key, value, is_container_id)?)
                }
                "K8S_POD_UID" => {}
                "" => return Err(CniError::invalid_env(format!("CNI_ARGS entry {pair:?} has an empty key"))),
                other => unknown.push(other.to_string()),
            }
        }
        if !unknown.is_empty() && !ignore_unknown {
            return Err(CniError::invalid_env(format!(
                "CNI_ARGS has unknown keys {unknown:?}; add IgnoreUnknown=1 to pass them"
            )));
        }
        Ok(args)
    }
}

fn checked_k8s_value(key: &str, value: &str, valid: fn(&str) -> bool) -> Result<String, CniError> {
    if valid(value) {
        Ok(value.to_string())
    } else {
        Err(CniError::invalid_env(format!("CNI_ARGS {key}={value:?} is not a valid value for {key}")))
    }
}

/// The spec's container ID shape: starts alphanumeric, then `[A-Za-z0-9_.-]`. Also keeps the
/// value safe as a file name and inside a Docker API URL path.
pub fn is_container_id(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 256
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Everything a plugin call gets from its environment.
#[derive(Debug, Clone)]
pub struct CniEnv {
    pub command: Command,
    pub container_id: String,
    /// Empty when the runtime has no namespace any more (e.g. DEL after a reboot).
    pub netns: String,
    pub ifname: String,
    pub args: CniArgs,
}

impl CniEnv {
    /// Reads and validates the variables `command` needs, from any lookup (the process
    /// environment in production, a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<CniEnv, CniError> {
        let command_text = lookup("CNI_COMMAND")
            .ok_or_else(|| CniError::invalid_env("CNI_COMMAND is not set"))?;
        let command = Command::parse(&command_text)?;
        let mut env = CniEnv {
            command,
            container_id: String::new(),
            netns: lookup("CNI_NETNS").unwrap_or_default(),
            ifname: String::new(),
            args: CniArgs::default(),
        };
        if !command.is_per_container() {
            return Ok(env);
        }
        let required = |name: &str| {
            lookup(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| CniError::invalid_env(format!("{name} is required for {command_text} but not set")))
        };
        env.container_id = required("CNI_CONTAINERID")?;
        if !is_container_id(&env.container_id) {
            return Err(CniError::invalid_env(format!(
                "CNI_CONTAINERID={:?} is not a valid container ID (letters, digits, '_', '.', '-')",
                env.container_id
            )));
        }
        env.ifname = required("CNI_IFNAME")?;
        if !is_interface_name(&env.ifname) {
            return Err(CniError::invalid_env(format!("CNI_IFNAME={:?} is not a valid interface name", env.ifname)));
        }
        if command != Command::Del {
            required("CNI_NETNS")?;
        }
        if !env.netns.is_empty() && !env.netns.starts_with('/') {
            return Err(CniError::invalid_env(format!("CNI_NETNS={:?} is not an absolute path", env.netns)));
        }
        env.args = CniArgs::parse(&lookup("CNI_ARGS").unwrap_or_default())?;
        Ok(env)
    }

    pub fn from_process() -> Result<CniEnv, CniError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

/// Linux interface names: 1-15 bytes, no '/', ':', whitespace, not "." or "..".
fn is_interface_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 15
        && text != "."
        && text != ".."
        && text.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> Result<CniEnv, CniError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        CniEnv::from_lookup(|name| map.get(name).cloned())
    }

    const ADD_ENV: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "0123abcd"),
        ("CNI_NETNS", "/proc/42/ns/net"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=0123abcd"),
    ];

    #[test]
    fn reads_cri_dockerd_environment() {
        let env = env_of(ADD_ENV).unwrap();
        assert_eq!(env.command, Command::Add);
        assert_eq!(env.args.pod_name.as_deref(), Some("web-0"));
        assert_eq!(env.args.pod_namespace.as_deref(), Some("default"));
        assert_eq!(env.args.pod_infra_container_id.as_deref(), Some("0123abcd"));
    }

    #[test]
    fn each_missing_variable_is_code_4_naming_it() {
        for missing in ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            let pairs: Vec<_> = ADD_ENV.iter().copied().filter(|(k, _)| *k != missing).collect();
            let err = env_of(&pairs).unwrap_err();
            assert_eq!(err.code, 4, "{missing}");
            assert!(err.msg.contains(missing), "{}", err.msg);
        }
    }

    #[test]
    fn del_accepts_empty_netns_version_needs_nothing() {
        let env = env_of(&[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "abc"), ("CNI_IFNAME", "eth0"), ("CNI_NETNS", "")]).unwrap();
        assert!(env.netns.is_empty());
        assert_eq!(env_of(&[("CNI_COMMAND", "VERSION")]).unwrap().command, Command::Version);
        assert_eq!(env_of(&[("CNI_COMMAND", "GC")]).unwrap().command, Command::Gc);
    }

    #[test]
    fn hostile_values_are_rejected() {
        let hostile_ids = ["../../etc/passwd", "a/b", ".hidden", "id\nnameserver 6.6.6.6", "a b", "x?all=1"];
        for id in hostile_ids {
            let mut pairs = ADD_ENV.to_vec();
            pairs[1] = ("CNI_CONTAINERID", id);
            assert_eq!(env_of(&pairs).unwrap_err().code, 4, "{id:?}");
        }
        let hostile_args = [
            "K8S_POD_NAME=a\nb",
            "K8S_POD_NAME=../../x",
            "K8S_POD_NAME=web 1",
            "K8S_POD_NAMESPACE=a.b",
            "K8S_POD_NAME=Web",
            "K8S_POD_INFRA_CONTAINER_ID=../x",
            "novalue",
            "=x",
            "Unknown=1",
        ];
        for args in hostile_args {
            let err = CniArgs::parse(args).unwrap_err();
            assert_eq!(err.code, 4, "{args:?}");
        }
        assert!(CniArgs::parse(&"K8S_POD_NAME=a;".repeat(400)).is_err());
        assert!(CniArgs::parse("IgnoreUnknown=1;Other=x").is_ok());
    }

    #[test]
    fn interface_and_command_checks() {
        let mut pairs = ADD_ENV.to_vec();
        pairs[3] = ("CNI_IFNAME", "a/b");
        assert_eq!(env_of(&pairs).unwrap_err().code, 4);
        pairs[0] = ("CNI_COMMAND", "REMOVE");
        assert_eq!(env_of(&pairs).unwrap_err().code, 4);
    }
}

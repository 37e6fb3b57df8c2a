//! The CNI environment variables, read once and validated before anything is touched.

use super::error::CniError;
use crate::dns::names::{is_dns_label, is_rfc1123_subdomain};

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
    /// What a lenient parse left out, each with the reason (for the call's log line).
    pub ignored: Vec<String>,
}

/// The longest `CNI_ARGS` ADD accepts; real runtimes send a few hundred bytes.
const MAX_CNI_ARGS_LEN: usize = 4096;
/// How much of a rejected value a message quotes.
const QUOTE_LEN: usize = 80;

impl CniArgs {
    /// `<namespace>/<pod>` (or just the pod) for logs and records.
    pub fn pod_ref(&self) -> Option<String> {
        match (&self.pod_namespace, &self.pod_name) {
            (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
            (None, Some(name)) => Some(name.clone()),
            _ => None,
        }
    }

    /// ADD's parse of `K=V;K=V`: a value this plugin uses must have Kubernetes' own shape
    /// (it ends up in a DNS record, a Docker API path, a log line), so anything else is an
    /// error. Unknown keys are an error unless `IgnoreUnknown=1` (as libcni's reference
    /// plugins do), and then ignored whatever they contain.
    pub fn parse(text: &str) -> Result<CniArgs, CniError> {
        let (args, problems) = Self::scan(text);
        match problems.into_iter().next() {
            Some(problem) => Err(CniError::invalid_env(problem)),
            None => Ok(args),
        }
    }

    /// The parse of every other verb: teardown and checks must never fail over the shape of
    /// an argument, so what does not pass is left out and listed in `ignored`.
    pub fn parse_lenient(text: &str) -> CniArgs {
        let (mut args, problems) = Self::scan(text);
        args.ignored = problems;
        args
    }

    /// Every entry, with a problem for each that ADD would refuse.
    fn scan(text: &str) -> (CniArgs, Vec<String>) {
        let mut args = CniArgs::default();
        let mut problems = Vec::new();
        if text.len() > MAX_CNI_ARGS_LEN {
            problems.push(format!("CNI_ARGS is {} bytes long, more than the {MAX_CNI_ARGS_LEN} accepted", text.len()));
        }
        let mut ignore_unknown = false;
        let mut unknown = Vec::new();
        for pair in text.split(';').filter(|p| !p.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                problems.push(format!("CNI_ARGS entry {} is not of the form KEY=VALUE", quote(pair)));
                continue;
            };
            let (slot, valid, what): (&mut Option<String>, fn(&str) -> bool, &str) = match key {
                "IgnoreUnknown" => {
                    ignore_unknown = matches!(value, "1" | "true" | "True");
                    continue;
                }
                "K8S_POD_NAME" => (&mut args.pod_name, is_rfc1123_subdomain, "a Kubernetes pod name"),
                "K8S_POD_NAMESPACE" => (&mut args.pod_namespace, is_dns_label, "a Kubernetes namespace"),
                "K8S_POD_INFRA_CONTAINER_ID" => (&mut args.pod_infra_container_id, is_container_id, "a container ID"),
                "" => {
                    problems.push(format!("CNI_ARGS entry {} has an empty key", quote(pair)));
                    continue;
                }
                // Passed by containerd and read by nobody here.
                "K8S_POD_UID" => continue,
                other => {
                    unknown.push(other.to_string());
                    continue;
                }
            };
            if valid(value) {
                *slot = Some(value.to_string());
            } else {
                problems.push(format!("CNI_ARGS {key}={} is not {what}", quote(value)));
            }
        }
        if !unknown.is_empty() && !ignore_unknown {
            let keys: Vec<String> = unknown.iter().map(|k| quote(k)).collect();
            problems.push(format!("CNI_ARGS has unknown keys [{}]; add IgnoreUnknown=1 to pass them", keys.join(", ")));
        }
        (args, problems)
    }
}

/// A value for a message: escaped (never a raw newline in a log line) and cut short.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_LEN) {
        Some((cut, _)) => format!("{:?}... ({} bytes)", &text[..cut], text.len()),
        None => format!("{text:?}"),
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
    /// environment in production, a map in tests). DEL needs only `CNI_CONTAINERID` (and
    /// the netns when there is one): whatever else is wrong with its environment is left
    /// out and noted in `args.ignored`, so a teardown always makes progress.
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
                "CNI_CONTAINERID={} is not a valid container ID (letters, digits, '_', '.', '-')",
                quote(&env.container_id)
            )));
        }
        let args_text = lookup("CNI_ARGS").unwrap_or_default();
        let mut ignored = Vec::new();
        let ifname = lookup("CNI_IFNAME").unwrap_or_default();
        let ifname_problem = if ifname.is_empty() {
            Some(format!("CNI_IFNAME is required for {command_text} but not set"))
        } else if !is_interface_name(&ifname) {
            Some(format!("CNI_IFNAME={} is not a valid interface name", quote(&ifname)))
        } else {
            None
        };
        let netns_problem = (!env.netns.is_empty() && !env.netns.starts_with('/'))
            .then(|| format!("CNI_NETNS={} is not an absolute path", quote(&env.netns)));
        if command == Command::Del {
            ignored.extend(ifname_problem);
            if let Some(problem) = netns_problem {
                ignored.push(problem);
                env.netns.clear();
            }
            if ifname.is_empty() || is_interface_name(&ifname) {
                env.ifname = ifname;
            }
            env.args = CniArgs::parse_lenient(&args_text);
        } else {
            if let Some(problem) = ifname_problem {
                return Err(CniError::invalid_env(problem));
            }
            env.ifname = ifname;
            required("CNI_NETNS")?;
            if let Some(problem) = netns_problem {
                return Err(CniError::invalid_env(problem));
            }
            env.args = match command {
                Command::Add => CniArgs::parse(&args_text)?,
                _ => CniArgs::parse_lenient(&args_text),
            };
        }
        ignored.append(&mut env.args.ignored);
        env.args.ignored = ignored;
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
    fn every_pod_name_kubernetes_accepts_is_accepted() {
        let long_part = format!("{}-0", "a".repeat(70));
        let longest = format!("{}.{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61));
        assert_eq!(longest.len(), 253);
        for pod in [long_part.as_str(), longest.as_str(), "web.v1"] {
            let args = CniArgs::parse(&format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod}")).unwrap();
            assert_eq!(args.pod_name.as_deref(), Some(pod));
        }
    }

    #[test]
    fn unknown_keys_are_ignored_whatever_they_contain() {
        let args = CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAME=web-0;io.kubernetes.x=a b\tc;Weird\nKey=\u{e9}").unwrap();
        assert_eq!(args.pod_name.as_deref(), Some("web-0"));
        assert!(args.ignored.is_empty());
    }

    #[test]
    fn del_needs_only_the_container_id() {
        let env = env_of(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "relative/ns"),
            ("CNI_ARGS", "K8S_POD_NAME=Bad Name;K8S_POD_NAMESPACE=default;K8S_POD_INFRA_CONTAINER_ID=../x;Extra=1;junk"),
        ])
        .unwrap();
        assert_eq!(env.container_id, "abc");
        assert!(env.netns.is_empty(), "an unusable netns is dropped, not an error");
        assert_eq!(env.args.pod_name, None);
        assert_eq!(env.args.pod_infra_container_id, None);
        assert_eq!(env.args.pod_namespace.as_deref(), Some("default"));
        let ignored = env.args.ignored.join("\n");
        for mentioned in ["CNI_IFNAME", "CNI_NETNS", "K8S_POD_NAME", "K8S_POD_INFRA_CONTAINER_ID", "junk", "Extra"] {
            assert!(ignored.contains(mentioned), "{mentioned} not in {ignored}");
        }
        assert!(!ignored.contains('\n') || ignored.lines().all(|l| !l.is_empty()));
        // Without the container ID there is nothing to tear down.
        assert_eq!(env_of(&[("CNI_COMMAND", "DEL"), ("CNI_IFNAME", "eth0")]).unwrap_err().code, 4);
    }

    #[test]
    fn check_ignores_odd_arguments_add_refuses_them() {
        let mut pairs = ADD_ENV.to_vec();
        pairs[4] = ("CNI_ARGS", "K8S_POD_NAME=Web;K8S_POD_NAMESPACE=default");
        assert_eq!(env_of(&pairs).unwrap_err().code, 4);
        pairs[0] = ("CNI_COMMAND", "CHECK");
        let env = env_of(&pairs).unwrap();
        assert_eq!(env.args.pod_name, None);
        assert_eq!(env.args.ignored.len(), 1);
    }

    #[test]
    fn messages_quote_values_escaped_and_short() {
        let err = CniArgs::parse(&format!("K8S_POD_NAME=x\n{}", "y".repeat(500))).unwrap_err();
        assert!(!err.msg.contains('\n'), "{}", err.msg);
        assert!(err.msg.len() < 200, "{}", err.msg);
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

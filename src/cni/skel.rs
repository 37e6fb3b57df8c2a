//! The CNI calling convention in one place: environment and stdin in, a dispatched verb,
//! a result or error JSON on stdout. Plugins implement [`Plugin`] and never touch either.

use super::config::NetConf;
use super::env::{CniEnv, Command};
use super::error::{code, CniError};
use super::result::InterfaceResult;
use super::version::{self, SpecVersion};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// More than any real network configuration; bounds what a hostile caller can make us hold.
pub const MAX_STDIN_BYTES: usize = 1024 * 1024;

/// One plugin invocation: its validated environment and configuration.
#[derive(Debug, Clone)]
pub struct Call {
    pub env: CniEnv,
    pub conf: NetConf,
}

/// The verbs of the spec. VERSION is answered by the skeleton itself, so it never
/// reaches plugin code (and never starts a runtime or opens a socket).
pub trait Plugin {
    fn add(&self, call: &Call) -> Result<InterfaceResult, CniError>;
    fn del(&self, call: &Call) -> Result<(), CniError>;
    fn check(&self, call: &Call) -> Result<(), CniError>;
    fn gc(&self, call: &Call) -> Result<(), CniError>;
    fn status(&self, call: &Call) -> Result<(), CniError>;
}

/// What happened, for the caller's log line.
#[derive(Debug)]
pub struct Report {
    pub command: Option<Command>,
    pub container_id: String,
    pub pod: Option<String>,
    /// Environment entries a lenient verb left out, with the reason.
    pub ignored: Vec<String>,
    pub outcome: Result<(), CniError>,
    pub elapsed: Duration,
}

impl Report {
    pub fn exit_code(&self) -> u8 {
        if self.outcome.is_ok() {
            0
        } else {
            1
        }
    }
}

/// Runs one invocation. Output goes to `stdout` only: a result, the version info, or an
/// error document (with a non-zero exit, since libcni reads exit 0 as success).
pub fn run(
    plugin: &dyn Plugin,
    lookup: &dyn Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
) -> Report {
    let started = Instant::now();
    let mut report = Report {
        command: None,
        container_id: String::new(),
        pod: None,
        ignored: Vec::new(),
        outcome: Ok(()),
        elapsed: Duration::ZERO,
    };
    let mut reply_version = version::LATEST.to_string();
    let outcome = dispatch(plugin, lookup, stdin, &mut report, &mut reply_version);
    let written = match &outcome {
        Ok(Some(document)) => writeln!(stdout, "{document}"),
        Ok(None) => Ok(()),
        Err(err) => writeln!(stdout, "{}", err.to_json(&reply_version)),
    };
    report.outcome = match (outcome, written) {
        (Err(err), _) => Err(err),
        (Ok(_), Err(e)) => Err(CniError::io(format!("cannot write the result to stdout: {e}"))),
        (Ok(_), Ok(())) => Ok(()),
    };
    let _ = stdout.flush();
    report.elapsed = started.elapsed();
    report
}

fn dispatch(
    plugin: &dyn Plugin,
    lookup: &dyn Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
    report: &mut Report,
    reply_version: &mut String,
) -> Result<Option<String>, CniError> {
    // The log line names the command even when another variable is what is wrong.
    report.command = lookup("CNI_COMMAND").and_then(|text| Command::parse(&text).ok());
    let env = CniEnv::from_lookup(lookup);
    let stdin_bytes = read_stdin(stdin);
    if let Ok(env) = &env {
        report.container_id = env.container_id.clone();
        report.pod = env.args.pod_ref();
        report.ignored.clone_from(&env.args.ignored);
        if env.command == Command::Version {
            let requested = stdin_bytes
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string));
            return Ok(Some(version::version_info_json(requested.as_deref())));
        }
    }
    // Answer errors in the caller's version whenever its configuration says one.
    let conf = stdin_bytes.and_then(|bytes| NetConf::parse(&bytes));
    if let Ok(conf) = &conf {
        reply_version.clone_from(&conf.cni_version);
    }
    let env = env?;
    let conf = conf?;
    let call = Call { env, conf };
    let version = call.conf.version;
    match call.env.command {
        Command::Add => {
            let result = plugin.add(&call)?;
            Ok(Some(result.to_json(&call.conf.cni_version, version).to_string()))
        }
        Command::Del => plugin.del(&call).map(|()| None),
        Command::Check => {
            require_version(version, SpecVersion::V0_4_0, "CHECK")?;
            plugin.check(&call).map(|()| None)
        }
        Command::Gc => {
            require_version(version, SpecVersion::V1_1_0, "GC")?;
            plugin.gc(&call).map(|()| None)
        }
        Command::Status => {
            require_version(version, SpecVersion::V1_1_0, "STATUS")?;
            plugin.status(&call).map(|()| None)
        }
        Command::Version => unreachable!("VERSION is answered above"),
    }
}

fn require_version(version: SpecVersion, minimum: SpecVersion, verb: &str) -> Result<(), CniError> {
    if version < minimum {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "configuration version {}.{}.{} does not allow {verb} (needs {}.{}.{} or newer)",
                version.0, version.1, version.2, minimum.0, minimum.1, minimum.2
            ),
        ));
    }
    Ok(())
}

fn read_stdin(stdin: &mut dyn Read) -> Result<Vec<u8>, CniError> {
    let mut bytes = Vec::new();
    stdin
        .take(MAX_STDIN_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CniError::io(format!("cannot read the network configuration from stdin: {e}")))?;
    if bytes.len() > MAX_STDIN_BYTES {
        return Err(CniError::new(
            code::DECODE_FAILURE,
            format!("network configuration on stdin is larger than {MAX_STDIN_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::result::Dns;
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::net::Ipv4Addr;

    /// Records which verbs ran; the skeleton's own behaviour is what is under test.
    #[derive(Default)]
    struct Recorder {
        calls: RefCell<Vec<&'static str>>,
    }

    impl Plugin for Recorder {
        fn add(&self, call: &Call) -> Result<InterfaceResult, CniError> {
            self.calls.borrow_mut().push("add");
            Ok(InterfaceResult {
                ifname: call.env.ifname.clone(),
                mac: None,
                sandbox: call.env.netns.clone(),
                address: Ipv4Addr::new(10, 0, 0, 2),
                prefix_len: 24,
                gateway: None,
                default_route: false,
                dns: Dns::default(),
            })
        }
        fn del(&self, _: &Call) -> Result<(), CniError> {
            self.calls.borrow_mut().push("del");
            Ok(())
        }
        fn check(&self, _: &Call) -> Result<(), CniError> {
            self.calls.borrow_mut().push("check");
            Err(CniError::new(code::ATTACHMENT_MISMATCH, "alias missing"))
        }
        fn gc(&self, _: &Call) -> Result<(), CniError> {
            self.calls.borrow_mut().push("gc");
            Ok(())
        }
        fn status(&self, _: &Call) -> Result<(), CniError> {
            self.calls.borrow_mut().push("status");
            Ok(())
        }
    }

    fn invoke(plugin: &Recorder, env: &[(&str, &str)], stdin: &[u8]) -> (Report, String) {
        let map: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut out = Vec::new();
        let report = run(plugin, &|k| map.get(k).cloned(), &mut &stdin[..], &mut out);
        (report, String::from_utf8(out).unwrap())
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
    ];

    #[test]
    fn version_needs_no_config_and_reaches_no_verb() {
        let plugin = Recorder::default();
        let (report, out) = invoke(&plugin, &[("CNI_COMMAND", "VERSION")], b"");
        assert_eq!(report.exit_code(), 0);
        assert!(out.contains("supportedVersions"));
        assert!(plugin.calls.borrow().is_empty());
    }

    #[test]
    fn add_prints_result_in_config_version() {
        let plugin = Recorder::default();
        let (report, out) = invoke(&plugin, ADD, br#"{"cniVersion":"0.3.1","name":"n","type":"t"}"#);
        assert_eq!(report.exit_code(), 0);
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(doc["cniVersion"], "0.3.1");
        assert_eq!(doc["ips"][0]["version"], "4");
    }

    #[test]
    fn errors_are_json_on_stdout_with_nonzero_exit_and_no_verb_runs() {
        let plugin = Recorder::default();
        let cases: &[(&[(&str, &str)], &[u8], u32)] = &[
            (ADD, b"{oops", code::DECODE_FAILURE),
            (ADD, br#"{"cniVersion":"3.0.0","name":"n"}"#, code::INCOMPATIBLE_VERSION),
            (&ADD[..2], br#"{"cniVersion":"1.0.0","name":"n"}"#, code::INVALID_ENVIRONMENT),
            (&[("CNI_COMMAND", "CHECK"), ("CNI_CONTAINERID", "c"), ("CNI_NETNS", "/x"), ("CNI_IFNAME", "eth0")],
             br#"{"cniVersion":"0.3.1","name":"n"}"#, code::INCOMPATIBLE_VERSION),
            (&[("CNI_COMMAND", "GC")], br#"{"cniVersion":"1.0.0","name":"n"}"#, code::INCOMPATIBLE_VERSION),
        ];
        for (env, stdin, expected) in cases {
            let (report, out) = invoke(&plugin, env, stdin);
            assert_eq!(report.exit_code(), 1);
            let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(doc["code"], *expected, "{out}");
        }
        assert!(plugin.calls.borrow().is_empty());
    }

    #[test]
    fn oversized_stdin_is_refused() {
        let plugin = Recorder::default();
        let mut big = br#"{"cniVersion":"1.0.0","name":"n","pad":""#.to_vec();
        big.extend(std::iter::repeat_n(b'x', MAX_STDIN_BYTES));
        big.extend(b"\"}");
        let (report, out) = invoke(&plugin, ADD, &big);
        assert_eq!(report.exit_code(), 1);
        assert!(out.contains("larger than"));
        assert!(plugin.calls.borrow().is_empty());
    }

    #[test]
    fn error_answers_in_config_version_and_plugin_errors_pass_through() {
        let plugin = Recorder::default();
        let env = &[("CNI_COMMAND", "CHECK"), ("CNI_CONTAINERID", "c"), ("CNI_NETNS", "/x"), ("CNI_IFNAME", "eth0")];
        let (report, out) = invoke(&plugin, env, br#"{"cniVersion":"0.4.0","name":"n"}"#);
        assert_eq!(report.exit_code(), 1);
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(doc["cniVersion"], "0.4.0");
        assert_eq!(doc["code"], code::ATTACHMENT_MISMATCH);
    }

    #[test]
    fn report_names_the_command_when_another_variable_is_invalid() {
        let plugin = Recorder::default();
        let env = &[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "../x"), ("CNI_NETNS", "/x"), ("CNI_IFNAME", "eth0")];
        let (report, _) = invoke(&plugin, env, br#"{"cniVersion":"1.0.0","name":"n"}"#);
        assert_eq!(report.command, Some(Command::Add));
        assert_eq!(report.outcome.unwrap_err().code, code::INVALID_ENVIRONMENT);
    }

    #[test]
    fn del_with_odd_arguments_runs_and_reports_what_it_ignored() {
        let plugin = Recorder::default();
        let env = &[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=Not_A_Pod;Other=a b"),
        ];
        let (report, out) = invoke(&plugin, env, br#"{"cniVersion":"1.0.0","name":"n"}"#);
        assert_eq!(report.exit_code(), 0, "{out}");
        assert_eq!(*plugin.calls.borrow(), vec!["del"]);
        assert!(report.ignored.iter().any(|i| i.contains("K8S_POD_NAME")), "{:?}", report.ignored);
        assert!(report.ignored.iter().any(|i| i.contains("CNI_IFNAME")), "{:?}", report.ignored);
    }

    #[test]
    fn del_prints_nothing() {
        let plugin = Recorder::default();
        let env = &[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "c"), ("CNI_IFNAME", "eth0")];
        let (report, out) = invoke(&plugin, env, br#"{"cniVersion":"1.0.0","name":"n"}"#);
        assert_eq!(report.exit_code(), 0);
        assert!(out.is_empty());
    }
}

//! smarter-cni: a CNI plugin for single-node IoT edge gateways that attaches Kubernetes pods
//! to a pod network and gives them DNS names there.
//!
//! Layout: `cni` is the protocol, `plugin` the verbs, `mode` the two pod networks behind one
//! seam (`docker`: a Docker user network; `bridge`: a Linux bridge of the plugin's own),
//! `dns` names/records/pod domains/resolv.conf, `node` and `cli` the node commands.

pub mod cli;
pub mod cni;
pub mod config;
pub mod dns;
pub mod ipv4;
pub mod log;
pub mod loopback;
pub mod mode;
pub mod netns;
pub mod node;
pub mod plugin;

use std::io::Write;
use std::process::ExitCode;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs one CNI invocation of `plugin` from the process environment and stdio.
pub fn run_cni(plugin: &dyn cni::Plugin, plugin_name: &str) -> ExitCode {
    let lookup = |name: &str| std::env::var(name).ok();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let report = cni::skel::run(plugin, &lookup, &mut std::io::stdin().lock(), &mut out);
    let _ = out.flush();
    log_report(plugin_name, &report);
    ExitCode::from(report.exit_code())
}

/// One line per call. Successful VERSION calls are not logged: cri-dockerd runs VERSION
/// every 5 s, which would write 17,280 lines a day to a gateway's SD card.
fn log_report(plugin_name: &str, report: &cni::Report) {
    let command = report.command.map(cni::Command::as_str).unwrap_or("(no valid CNI_COMMAND)");
    if report.command == Some(cni::Command::Version) && report.outcome.is_ok() {
        return;
    }
    let mut line = format!("{plugin_name} {command}");
    if !report.container_id.is_empty() {
        line.push_str(&format!(" container={}", plugin::short(&report.container_id)));
    }
    if let Some(pod) = &report.pod {
        line.push_str(&format!(" pod={pod}"));
    }
    if !report.ignored.is_empty() {
        line.push_str(&format!(" ignored={:?}", report.ignored.join("; ")));
    }
    line.push_str(&format!(" duration={}ms", report.elapsed.as_millis()));
    match &report.outcome {
        Ok(()) => {
            line.push_str(" outcome=ok");
            log::info(&line);
        }
        Err(err) => {
            line.push_str(&format!(" outcome=error code={} msg={:?}", err.code, err.msg));
            if !err.details.is_empty() {
                line.push_str(&format!(" details={:?}", err.details));
            }
            log::error(&line);
        }
    }
}

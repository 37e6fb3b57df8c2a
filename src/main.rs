use smarter_cni::{cli, loopback::Loopback, plugin::SmarterCni, run_cni};
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    // Installed as /opt/cni/bin/loopback (a link to this binary), it is that plugin.
    if Path::new(&argv0).file_name().is_some_and(|name| name == "loopback") {
        return run_cni(&Loopback, "loopback");
    }
    if std::env::var_os("CNI_COMMAND").is_some() {
        return run_cni(&SmarterCni, "smarter-cni");
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    cli::main(&args)
}

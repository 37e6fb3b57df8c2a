//! The pod network under test: everything that knows which CNI plugins containerd runs.
//! For bring-up these are Debian's reference plugins (`containernetworking-plugins`:
//! bridge + host-local + firewall, and loopback, which containerd itself runs for `lo`). Switching the
//! suite to smarter-cni's bridge mode means replacing this file only.

use super::TestCtx;
use std::path::{Path, PathBuf};

const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// The conflist the test writes into containerd's CNI conf dir.
pub fn pod_network_conflist(test: &TestCtx) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": test.network,
        "plugins": [{
            "type": "bridge",
            "bridge": test.bridge,
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": test.subnet, "gateway": test.gateway }]],
                "routes": [{ "dst": "0.0.0.0/0" }],
                "dataDir": host_local_dir(test),
            },
        }, {
            // Docker on this host sets the FORWARD policy to DROP, and br_netfilter sends
            // bridged frames through it: without these ACCEPTs pods on one bridge cannot
            // talk (the pod to the gateway still can).
            "type": "firewall",
            "backend": "iptables",
        }],
    })
    .to_string()
}

/// The plugins containerd finds in its CNI bin dir, by type.
pub fn pod_network_plugins() -> Vec<(&'static str, PathBuf)> {
    ["bridge", "host-local", "loopback", "firewall"].iter().map(|p| (*p, Path::new(REFERENCE_PLUGINS).join(p))).collect()
}

/// What the pod network still holds for a sandbox (leases, ...): empty once it is removed.
pub fn pod_network_leftovers(test: &TestCtx, sandbox_id: &str) -> Vec<String> {
    let dir = host_local_dir(test).join(&test.network);
    let mut left = Vec::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        // host-local: one file per address, holding "<container id>\n<ifname>".
        if std::fs::read_to_string(entry.path()).is_ok_and(|c| c.starts_with(sandbox_id)) {
            left.push(format!("host-local lease {}", entry.path().display()));
        }
    }
    left
}

fn host_local_dir(test: &TestCtx) -> PathBuf {
    test.work_dir.join("host-local")
}

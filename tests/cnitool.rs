//! The plugin through a real CNI client: libcni's cnitool (libcni 1.1.2, as vendored by
//! cri-dockerd). cnitool derives its own container ID from the netns path, so these
//! calls also prove that the sandbox is found by its network namespace.

mod common;

use common::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cnitool_path() -> String {
    std::env::var("SMARTER_CNI_TEST_CNITOOL").expect("SMARTER_CNI_TEST_CNITOOL is not set: run scripts/test.sh (scripts/cnitool.sh builds it)")
}

/// A CNI_PATH folder holding the plugin under its two names, as /opt/cni/bin does. A
/// wrapper script stands in when the plugin runs under an emulator.
fn cni_bin_dir(tag: &str) -> PathBuf {
    let dir = PathBuf::from(format!("/run/smarter-cni-test/cnitool-bin-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let binary = std::env::var("SMARTER_CNI_PLUGIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_smarter-cni").to_string());
    match std::env::var("SMARTER_CNI_PLUGIN_WRAPPER").ok().filter(|w| !w.is_empty()) {
        None => {
            std::os::unix::fs::symlink(&binary, dir.join("smarter-cni")).unwrap();
            std::os::unix::fs::symlink(&binary, dir.join("loopback")).unwrap();
        }
        Some(wrapper) => {
            for name in ["smarter-cni", "loopback"] {
                // qemu's -0 sets argv[0], which is how the binary knows it is `loopback`.
                let script = format!("#!/bin/sh\nexec {wrapper} -0 {name} {binary} \"$@\"\n");
                let path = dir.join(name);
                std::fs::write(&path, script).unwrap();
                std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
            }
        }
    }
    dir
}

fn cnitool(verb: &str, network: &str, netns: &str, bin_dir: &Path, conf_dir: &Path, args: &str) -> Output {
    Command::new(cnitool_path())
        .args([verb, network, netns])
        .env("CNI_PATH", bin_dir)
        .env("NETCONFPATH", conf_dir)
        // cri-dockerd passes the pod's interface name to loopback too.
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", args)
        .output()
        .expect("run cnitool")
}

fn assert_success(what: &str, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{what}: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_check_del_through_cnitool() {
    let net = TestNet::new("cnitool");
    let bin_dir = cni_bin_dir("plugin");
    let conf_dir = bin_dir.with_extension("conf");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let mut plugin = net.config("1.0.0");
    plugin.as_object_mut().unwrap().remove("cniVersion");
    plugin.as_object_mut().unwrap().remove("name");
    let conflist = json!({"cniVersion": "1.0.0", "name": net.name, "plugins": [plugin]});
    std::fs::write(conf_dir.join("10-smarter-cni.conflist"), conflist.to_string()).unwrap();

    let a = Sandbox::start("tool-a", "default", "toola", "10.43.0.10").await;
    let b = Sandbox::start("tool-b", "default", "toolb", "10.43.0.10").await;
    let args = |pod: &Sandbox| format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={}", pod.pod);
    let mut ips = Vec::new();
    for pod in [&a, &b] {
        let out = cnitool("add", &net.name, &pod.netns(), &bin_dir, &conf_dir, &args(pod));
        let result: serde_json::Value = serde_json::from_str(&assert_success("cnitool add", &out)).unwrap();
        ips.push(result_ip(&result));
        assert!(pod.endpoints().await.contains_key(&net.name));
    }
    // Pods found by netns resolve each other like any other.
    let (code, out) = a.exec(&["getent", "hosts", "tool-b"]).await;
    assert_eq!((code, out.split_whitespace().next()), (0, Some(ips[1].as_str())), "{out}");

    assert_success("cnitool check", &cnitool("check", &net.name, &a.netns(), &bin_dir, &conf_dir, &args(&a)));
    for pod in [&a, &b] {
        assert_success("cnitool del", &cnitool("del", &net.name, &pod.netns(), &bin_dir, &conf_dir, &args(pod)));
        assert!(!pod.endpoints().await.contains_key(&net.name));
    }
    assert!(net.records().is_empty());
    for pod in [&a, &b] {
        pod.remove().await;
    }
    net.cleanup().await;
    let _ = std::fs::remove_dir_all(&conf_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_through_cnitool() {
    let ns = format!("sct-cnilo-{}", std::process::id());
    assert!(Command::new("ip").args(["netns", "add", &ns]).status().unwrap().success());
    let netns = format!("/run/netns/{ns}");
    let bin_dir = cni_bin_dir("loopback");
    let conf_dir = bin_dir.with_extension("conf");
    std::fs::create_dir_all(&conf_dir).unwrap();
    // cri-dockerd's built-in loopback list (network/cni/cni.go), as a file libcni reads.
    let cri_dockerd_list = r#"{"cniVersion":"0.2.0","name":"cni-loopback","plugins":[{"type":"loopback"}]}"#;
    std::fs::write(conf_dir.join("99-loopback.conflist"), cri_dockerd_list).unwrap();
    let lo_up = || {
        let out = Command::new("ip").args(["-n", &ns, "-o", "link", "show", "lo"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).contains("UP,")
    };
    assert!(!lo_up());
    let args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=lo-pod-0;K8S_POD_INFRA_CONTAINER_ID=cnitool-lo";
    let out = assert_success("add", &cnitool("add", "cni-loopback", &netns, &bin_dir, &conf_dir, args));
    assert!(out.contains("127.0.0.1/8"), "{out}");
    assert!(lo_up());
    assert_success("del", &cnitool("del", "cni-loopback", &netns, &bin_dir, &conf_dir, args));
    assert!(!lo_up());
    // CHECK needs a 0.4.0+ list (libcni refuses it for 0.2.0 before calling the plugin).
    std::fs::write(conf_dir.join("99-loopback.conflist"), cri_dockerd_list.replace("0.2.0", "1.0.0")).unwrap();
    assert_success("add", &cnitool("add", "cni-loopback", &netns, &bin_dir, &conf_dir, args));
    assert_success("check", &cnitool("check", "cni-loopback", &netns, &bin_dir, &conf_dir, args));
    assert_success("del", &cnitool("del", "cni-loopback", &netns, &bin_dir, &conf_dir, args));
    assert!(!lo_up());
    Command::new("ip").args(["netns", "del", &ns]).status().unwrap();
    let _ = std::fs::remove_dir_all(&conf_dir);
}

//! The plugin against a real Docker engine, driven the way cri-dockerd drives it.

mod common;

use common::*;
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

const CLUSTER_DNS: &str = "10.43.0.10";

async fn resolves_to(pod: &Sandbox, name: &str, ip: &str) -> bool {
    let (code, out) = pod.exec(&["getent", "hosts", name]).await;
    code == 0 && out.split_whitespace().next() == Some(ip)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_resolve_each_other_by_hostname_and_pod_name() {
    let net = TestNet::new("dns");
    let a = Sandbox::start("alpha-7f9c", "default", "alpha", CLUSTER_DNS).await;
    let b = Sandbox::start("beta-5d2e", "iot", "beta", CLUSTER_DNS).await;
    let ip_a = result_ip(&add(&net, &a, "1.0.0").await.ok().json());
    let ip_b = result_ip(&add(&net, &b, "1.0.0").await.ok().json());
    assert_ne!(ip_a, ip_b);

    for (from, to, ip) in [(&a, &b, &ip_b), (&b, &a, &ip_a)] {
        for name in [to.hostname.clone(), to.pod.clone(), format!("{}.{}", to.pod, to.namespace)] {
            assert!(resolves_to(from, &name, ip).await, "{} cannot resolve {name} to {ip}", from.pod);
        }
    }
    // The runtime's search domains and options survive; only the nameserver changed.
    let (_, resolv) = a.exec(&["cat", "/etc/resolv.conf"]).await;
    let servers: Vec<&str> = resolv.lines().filter_map(|l| l.strip_prefix("nameserver ")).collect();
    assert_eq!(servers, ["127.0.0.11", net.gateway.as_str()], "embedded DNS, then node DNS: {resolv}");
    assert!(!resolv.contains(CLUSTER_DNS), "{resolv}");
    assert!(resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"), "{resolv}");
    assert!(resolv.contains("options ndots:5"), "{resolv}");

    // The record node DNS serves names the same pod.
    let record = std::fs::read_to_string(net.record_path(&a.id)).unwrap();
    assert!(record.contains(&format!("{ip_a} alpha alpha-7f9c alpha-7f9c.default")), "{record}");

    for pod in [&a, &b] {
        del(&net, pod, "1.0.0").await.ok();
        pod.remove().await;
    }
    net.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_shapes_for_every_version_and_repeated_add_is_identical() {
    let net = TestNet::new("shape");
    let pod = Sandbox::start("shape-1", "default", "shape", CLUSTER_DNS).await;
    let first = add(&net, &pod, "1.0.0").await.ok().json();
    assert_eq!(first["cniVersion"], "1.0.0");
    assert_eq!(first["interfaces"][0]["name"], "eth0");
    assert_eq!(first["interfaces"][0]["sandbox"], pod.netns());
    assert!(first["interfaces"][0]["mac"].as_str().unwrap().len() == 17);
    assert_eq!(first["ips"][0]["gateway"], net.gateway);
    assert_eq!(first["ips"][0]["interface"], 0);
    assert!(first["ips"][0]["address"].as_str().unwrap().ends_with("/24"));
    assert_eq!(first["routes"][0]["dst"], "0.0.0.0/0");

    let again = add(&net, &pod, "1.0.0").await.ok().json();
    assert_eq!(first, again, "repeated ADD returns the same result");
    assert_eq!(pod.endpoints().await.len(), 1, "still exactly one endpoint");

    for version in ["0.3.0", "0.3.1", "0.4.0", "1.1.0"] {
        let doc = add(&net, &pod, version).await.ok().json();
        assert_eq!(doc["cniVersion"], version);
        assert_eq!(result_ip(&doc), result_ip(&first));
        if version.starts_with("0.") {
            assert_eq!(doc["ips"][0]["version"], "4");
        }
    }
    del(&net, &pod, "1.0.0").await.ok();
    pod.remove().await;
    net.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_config_answers_in_the_legacy_format() {
    let net = TestNet::new("seed");
    let pod = Sandbox::start("seed-1", "default", "seed", CLUSTER_DNS).await;
    // The seed's file, plus only what keeps this test off the node's real network and records.
    let conf = json!({"cniVersion": "0.2.0", "name": net.name, "type": "smarter-cni", "debug": true,
                      "subnet": net.subnet, "dockerHost": docker_host(), "dns": {"recordsDir": net.records_dir}});
    let out = plugin(pod.env("ADD"), conf.to_string().into_bytes()).await;
    let doc = out.ok().json();
    assert_eq!(doc["cniVersion"], "0.2.0");
    assert!(doc["ip4"]["ip"].as_str().unwrap().ends_with("/24"));
    assert_eq!(doc["ip4"]["gateway"], net.gateway);
    assert!(doc.get("ips").is_none());
    plugin(pod.env("DEL"), conf.to_string().into_bytes()).await.ok();
    pod.remove().await;
    net.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_is_idempotent_and_works_without_netns() {
    let net = TestNet::new("del");
    let pod = Sandbox::start("del-1", "default", "del", CLUSTER_DNS).await;
    add(&net, &pod, "1.0.0").await.ok();
    assert!(net.record_path(&pod.id).exists());

    del(&net, &pod, "1.0.0").await.ok();
    assert!(!pod.endpoints().await.contains_key(&net.name));
    assert!(!net.record_path(&pod.id).exists());
    del(&net, &pod, "1.0.0").await.ok();

    // After a reboot the runtime has no netns to give.
    let mut env = pod.env("DEL");
    env.retain(|(k, _)| k != "CNI_NETNS");
    env.push(("CNI_NETNS".into(), String::new()));
    plugin(env.clone(), net.config("1.0.0").to_string().into_bytes()).await.ok();

    // Container gone entirely: still success.
    pod.remove().await;
    plugin(env, net.config("1.0.0").to_string().into_bytes()).await.ok();
    del(&net, &pod, "0.4.0").await.ok();
    net.cleanup().await;
}

/// Pod names Kubernetes accepts but DNS cannot carry: a 70-character part, and 253
/// characters (its `<pod>.<namespace>` form is longer than any DNS name). Both attach with
/// the names that are valid, through loopback and smarter-cni as cri-dockerd calls them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_names_that_are_not_dns_names_attach_with_their_valid_names() {
    let net = TestNet::new("longname");
    let peer = Sandbox::start("peer-0", "default", "peer", CLUSTER_DNS).await;
    add(&net, &peer, "1.0.0").await.ok();
    let long_part = format!("{}-0", "a".repeat(70));
    let longest = format!("{}.{}.{}.{}", "b".repeat(63), "c".repeat(63), "d".repeat(63), "e".repeat(61));
    assert_eq!(longest.len(), 253);
    for pod_name in [long_part, longest] {
        let hostname = kubelet_hostname(&pod_name);
        assert_eq!(hostname.len(), 63);
        let pod = Sandbox::start(&pod_name, "default", &hostname, CLUSTER_DNS).await;
        pod.loopback("ADD").await.ok();
        let out = add(&net, &pod, "1.0.0").await;
        let ip = result_ip(&out.ok().json());
        assert!(out.stderr.contains("skipped names that cannot be DNS names"), "{}", out.stderr);

        assert!(resolves_to(&peer, &hostname, &ip).await, "peer resolves {hostname}");
        let registered: Vec<String> = std::fs::read_to_string(net.record_path(&pod.id))
            .unwrap()
            .lines()
            .find(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().skip(1).map(str::to_string).collect())
            .unwrap_or_default();
        let endpoint = pod.endpoints().await.remove(&net.name).expect("attached");
        let aliases = endpoint.aliases.unwrap_or_default();
        for name in registered.iter().chain(&aliases) {
            assert!(name.len() <= 253 && name.split('.').all(|l| l.len() <= 63), "overlong name registered: {name}");
        }
        assert!(registered.contains(&hostname), "{registered:?}");
        let with_namespace = format!("{pod_name}.default");
        assert!(!registered.contains(&with_namespace) && !aliases.contains(&with_namespace));
        // The 253-character name is a DNS name itself; the 70-character part is not.
        assert_eq!(registered.contains(&pod_name), pod_name.split('.').all(|l| l.len() <= 63), "{registered:?}");

        for _ in 0..2 {
            del(&net, &pod, "1.0.0").await.ok();
            pod.loopback("DEL").await.ok();
        }
        assert!(!pod.endpoints().await.contains_key(&net.name));
        assert!(!net.record_path(&pod.id).exists());
        pod.remove().await;
    }
    del(&net, &peer, "1.0.0").await.ok();
    peer.remove().await;
    net.cleanup().await;
}

/// DEL needs only the container ID (and the netns when there is one): no `CNI_ARGS` value
/// can make a teardown fail, so the kubelet never sticks a pod in Terminating over one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_never_fails_over_the_shape_of_cni_args() {
    let net = TestNet::new("delargs");
    let pod = Sandbox::start("delargs-1", "default", "delargs", CLUSTER_DNS).await;
    let odd_args = [
        // What a newer runtime might add under IgnoreUnknown: spaces, slashes, UTF-8.
        format!("{};K8S_POD_UID=1b4e-28ba;io.kubernetes.cri.annotation=a b/c?\u{e9}", pod.cni_args()),
        // Values ADD would refuse, in keys it uses; and no IgnoreUnknown at all.
        format!("K8S_POD_NAMESPACE=Default;K8S_POD_NAME=x y;K8S_POD_INFRA_CONTAINER_ID=../{};Extra=1;junk", pod.id),
    ];
    for args in odd_args {
        add(&net, &pod, "1.0.0").await.ok();
        let mut env = pod.env("DEL");
        env.retain(|(k, _)| k != "CNI_ARGS" && k != "CNI_IFNAME");
        env.push(("CNI_ARGS".into(), args.clone()));
        let out = plugin(env.clone(), net.config("1.0.0").to_string().into_bytes()).await;
        out.ok();
        assert!(!pod.endpoints().await.contains_key(&net.name), "detached with CNI_ARGS {args:?}");
        assert!(!net.record_path(&pod.id).exists());
        assert!(out.stderr.contains("DEL") && out.stderr.contains("ignored="), "{}", out.stderr);
        plugin(env, net.config("1.0.0").to_string().into_bytes()).await.ok();
    }
    // The same CNI_ARGS on ADD are refused where a value is used, and change nothing.
    let mut env = pod.env("ADD");
    env.retain(|(k, _)| k != "CNI_ARGS");
    env.push(("CNI_ARGS".into(), "IgnoreUnknown=1;K8S_POD_NAME=x y".into()));
    assert_eq!(plugin(env, net.config("1.0.0").to_string().into_bytes()).await.error_code(), 4);
    assert!(!pod.endpoints().await.contains_key(&net.name));
    assert!(net.records().is_empty());
    pod.remove().await;
    net.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_with_empty_netns_still_detaches_a_live_sandbox() {
    let net = TestNet::new("delnons");
    let pod = Sandbox::start("delnons-1", "default", "delnons", CLUSTER_DNS).await;
    add(&net, &pod, "1.0.0").await.ok();
    let mut env = pod.env("DEL");
    env.retain(|(k, _)| k != "CNI_NETNS");
    plugin(env, net.config("1.0.0").to_string().into_bytes()).await.ok();
    assert!(!pod.endpoints().await.contains_key(&net.name));
    assert!(net.records().is_empty());
    pod.remove().await;
    net.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_then_catches_a_missing_alias_and_a_wrong_address() {
    let net = TestNet::new("check");
    let pod = Sandbox::start("check-1", "default", "check", CLUSTER_DNS).await;
    let result = add(&net, &pod, "1.0.0").await.ok().json();
    let mut conf = net.config("1.0.0");
    conf["prevResult"] = result.clone();
    plugin(pod.env("CHECK"), conf.to_string().into_bytes()).await.ok();

    // Someone reconnects the sandbox without the pod-name alias.
    let docker = docker();
    docker
        .disconnect_network(&net.name, bollard::models::NetworkDisconnectRequest { container: pod.id.clone(), force: Some(true) })
        .await
        .unwrap();
    let endpoint = bollard::models::EndpointSettings {
        aliases: Some(vec!["check".into()]),
        ipam_config: Some(bollard::models::EndpointIpamConfig {
            ipv4_address: Some(result_ip(&result)),
            ..Default::default()
        }),
        ..Default::default()
    };
    docker
        .connect_network(&net.name, bollard::models::NetworkConnectRequest { container: pod.id.clone(), endpoint_config: Some(endpoint) })
        .await
        .unwrap();
    let out = plugin(pod.env("CHECK"), conf.to_string().into_bytes()).await;
    assert_eq!(out.error_code(), 101, "{out:?}");
    let details = out.json()["details"].as_str().unwrap().to_string();
    assert!(details.contains("check-1.default"), "{details}");

    // A prevResult that does not match the attachment.
    conf["prevResult"]["ips"][0]["address"] = json!("10.255.255.9/24");
    let out = plugin(pod.env("CHECK"), conf.to_string().into_bytes()).await;
    assert_eq!(out.error_code(), 101);
    assert!(out.json()["details"].as_str().unwrap().contains("prevResult says 10.255.255.9/24"));

    // CHECK before 0.4.0 is not allowed by the spec.
    let out = plugin(pod.env("CHECK"), net.config("0.3.1").to_string().into_bytes()).await;
    assert_eq!(out.error_code(), 1);

    del(&net, &pod, "1.0.0").await.ok();
    pod.remove().await;
    net.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_detaches_sandboxes_the_runtime_no_longer_lists() {
    let net = TestNet::new("gc");
    let keep = Sandbox::start("keep-1", "default", "keep", CLUSTER_DNS).await;
    let stale = Sandbox::start("stale-1", "default", "stale", CLUSTER_DNS).await;
    add(&net, &keep, "1.1.0").await.ok();
    add(&net, &stale, "1.1.0").await.ok();
    let bystander = Sandbox::start("bystander", "default", "bystander", CLUSTER_DNS).await;
    docker()
        .disconnect_network("none", bollard::models::NetworkDisconnectRequest { container: bystander.id.clone(), force: Some(true) })
        .await
        .unwrap();
    docker()
        .connect_network(&net.name, bollard::models::NetworkConnectRequest { container: bystander.id.clone(), endpoint_config: None })
        .await
        .unwrap();
    // Attached by hand, no record, but the runtime lists it: GC must keep it.
    let mut conf = net.config("1.1.0");
    conf["cni.dev/valid-attachments"] = json!([{"containerID": keep.id, "ifname": "eth0"}, {"containerID": bystander.id, "ifname": "eth0"}]);
    plugin(vec![("CNI_COMMAND".into(), "GC".into())], conf.to_string().into_bytes()).await.ok();

    assert!(keep.endpoints().await.contains_key(&net.name), "valid attachment kept");
    assert!(bystander.endpoints().await.contains_key(&net.name), "listed container kept");
    assert!(!stale.endpoints().await.contains_key(&net.name), "stale attachment removed");
    assert_eq!(net.records(), vec![keep.id.clone()]);

    // GC is a 1.1.0 verb.
    let out = plugin(vec![("CNI_COMMAND".into(), "GC".into())], net.config("1.0.0").to_string().into_bytes()).await;
    assert_eq!(out.error_code(), 1);

    for pod in [&keep, &stale, &bystander] {
        pod.remove().await;
    }
    net.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_spares_containers_that_are_not_pod_sandboxes() {
    let net = TestNet::new("gcspare");
    let pod = Sandbox::start("gcspare-1", "default", "gcspare", CLUSTER_DNS).await;
    add(&net, &pod, "1.1.0").await.ok();
    // A plain container attached by an operator: no record, no sandbox label.
    let docker = docker();
    let other = docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            bollard::models::ContainerCreateBody {
                image: Some(TEST_IMAGE.into()),
                host_config: Some(bollard::models::HostConfig { network_mode: Some(net.name.clone()), ..Default::default() }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    docker.start_container(&other.id, None::<bollard::query_parameters::StartContainerOptions>).await.unwrap();
    let mut conf = net.config("1.1.0");
    conf["cni.dev/valid-attachments"] = json!([]);
    plugin(vec![("CNI_COMMAND".into(), "GC".into())], conf.to_string().into_bytes()).await.ok();
    assert!(!pod.endpoints().await.contains_key(&net.name));
    let other_nets = docker
        .inspect_container(&other.id, None::<bollard::query_parameters::InspectContainerOptions>)
        .await
        .unwrap()
        .network_settings
        .unwrap()
        .networks
        .unwrap();
    assert!(other_nets.contains_key(&net.name), "operator's container untouched");
    let _ = docker
        .remove_container(&other.id, Some(bollard::query_parameters::RemoveContainerOptions { force: true, ..Default::default() }))
        .await;
    pod.remove().await;
    net.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_adds_then_dels_leave_nothing_behind() {
    let net = TestNet::new("burst");
    let mut pods = Vec::new();
    for i in 0..20 {
        pods.push(Sandbox::start(&format!("burst-{i}"), "default", &format!("burst{i}"), CLUSTER_DNS).await);
    }
    // The network does not exist yet: all twenty race to create it.
    let adds = pods.iter().map(|p| add(&net, p, "1.0.0"));
    let results = futures_util::future::join_all(adds).await;
    let ips: HashSet<String> = results.iter().map(|o| result_ip(&o.ok().json())).collect();
    assert_eq!(ips.len(), 20, "distinct addresses");
    assert_eq!(net.records().len(), 20);

    let dels = pods.iter().map(|p| del(&net, p, "1.0.0"));
    for out in futures_util::future::join_all(dels).await {
        out.ok();
    }
    assert!(net.records().is_empty(), "no records left: {:?}", net.records());
    let attached = docker()
        .inspect_network(&net.name, None::<bollard::query_parameters::InspectNetworkOptions>)
        .await
        .unwrap()
        .containers
        .unwrap_or_default();
    assert!(attached.is_empty(), "no endpoints left: {attached:?}");
    let networks = docker()
        .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
        .await
        .unwrap();
    assert_eq!(networks.iter().filter(|n| n.name.as_deref() == Some(net.name.as_str())).count(), 1, "one network, not duplicates");
    for pod in &pods {
        pod.remove().await;
    }
    net.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_is_found_by_infra_id_or_by_network_namespace() {
    let net = TestNet::new("find");
    let pod = Sandbox::start("find-1", "default", "find", CLUSTER_DNS).await;
    // CNI_CONTAINERID that Docker does not know, infra ID in CNI_ARGS.
    let mut env = pod.env("ADD");
    env[1].1 = "runtime-id-1".into();
    let ip = result_ip(&plugin(env.clone(), net.config("1.0.0").to_string().into_bytes()).await.ok().json());
    env[0].1 = "DEL".into();
    plugin(env, net.config("1.0.0").to_string().into_bytes()).await.ok();
    assert!(!pod.endpoints().await.contains_key(&net.name));

    // Neither ID known: only the netns leads to the sandbox (what cnitool does).
    let mut env = pod.env("ADD");
    env[1].1 = "cnitool-0123456789abcdef".into();
    env[4].1 = "IgnoreUnknown=1".into();
    let again = result_ip(&plugin(env.clone(), net.config("1.0.0").to_string().into_bytes()).await.ok().json());
    assert!(!again.is_empty() && !ip.is_empty());
    assert!(net.record_path("cnitool-0123456789abcdef").exists());
    env[0].1 = "DEL".into();
    plugin(env, net.config("1.0.0").to_string().into_bytes()).await.ok();
    assert!(!pod.endpoints().await.contains_key(&net.name));
    pod.remove().await;
    net.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sandbox_is_code_3_and_changes_nothing() {
    let net = TestNet::new("unknown");
    let env = vec![
        ("CNI_COMMAND".to_string(), "ADD".to_string()),
        ("CNI_CONTAINERID".to_string(), "f00d".to_string()),
        ("CNI_NETNS".to_string(), "/proc/1/ns/net".to_string()),
        ("CNI_IFNAME".to_string(), "eth0".to_string()),
    ];
    let out = plugin(env, net.config("1.0.0").to_string().into_bytes()).await;
    assert_eq!(out.error_code(), 3);
    assert!(out.json()["msg"].as_str().unwrap().contains("f00d"));
    assert!(net.records().is_empty());
    net.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_with_another_subnet_is_code_7_with_the_fix() {
    let net = TestNet::new("clash");
    let (other_subnet, other_gateway) = next_subnet();
    let docker = docker();
    docker
        .create_network(bollard::models::NetworkCreateRequest {
            name: net.name.clone(),
            driver: Some("bridge".into()),
            ipam: Some(bollard::models::Ipam {
                config: Some(vec![bollard::models::IpamConfig {
                    subnet: Some(other_subnet.clone()),
                    gateway: Some(other_gateway),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let pod = Sandbox::start("clash-1", "default", "clash", CLUSTER_DNS).await;
    let out = add(&net, &pod, "1.0.0").await;
    assert_eq!(out.error_code(), 7);
    let msg = out.json()["msg"].as_str().unwrap().to_string();
    assert!(msg.contains(&format!("subnet is {other_subnet}, configuration says {}", net.subnet)), "{msg}");
    assert!(msg.contains("docker network rm"), "{msg}");
    assert!(pod.endpoints().await.contains_key("none"), "sandbox left as it was");
    assert!(net.records().is_empty());
    pod.remove().await;
    net.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_code_and_changes_nothing() {
    let net = TestNet::new("bad");
    let pod = Sandbox::start("bad-1", "default", "bad", CLUSTER_DNS).await;
    let good = net.config("1.0.0").to_string().into_bytes();
    let with = |key: &str, value: &str| {
        let mut env = pod.env("ADD");
        env.retain(|(k, _)| k != key);
        env.push((key.to_string(), value.to_string()));
        env
    };
    let without = |key: &str| {
        let mut env = pod.env("ADD");
        env.retain(|(k, _)| k != key);
        env
    };
    let mut huge = net.config("1.0.0");
    huge["padding"] = json!("x".repeat(1024 * 1024));
    let cases: Vec<(&str, Vec<(String, String)>, Vec<u8>, u64)> = vec![
        ("malformed JSON", pod.env("ADD"), b"{\"cniVersion\": \"1.0.0\", ".to_vec(), 6),
        ("stdin over 1 MiB", pod.env("ADD"), huge.to_string().into_bytes(), 6),
        ("unsupported version", pod.env("ADD"), net.config("2.0.0").to_string().into_bytes(), 1),
        ("missing CNI_CONTAINERID", without("CNI_CONTAINERID"), good.clone(), 4),
        ("missing CNI_NETNS", without("CNI_NETNS"), good.clone(), 4),
        ("missing CNI_IFNAME", without("CNI_IFNAME"), good.clone(), 4),
        ("unknown command", with("CNI_COMMAND", "ATTACH"), good.clone(), 4),
        ("interface Docker does not use", with("CNI_IFNAME", "net1"), good.clone(), 4),
        ("hostile container ID", with("CNI_CONTAINERID", "../../../etc/passwd"), good.clone(), 4),
        ("newline in pod name", with("CNI_ARGS", "K8S_POD_NAME=x\n1.2.3.4 evil;K8S_POD_NAMESPACE=default"), good.clone(), 4),
        ("path in pod name", with("CNI_ARGS", "K8S_POD_NAME=../../etc;K8S_POD_NAMESPACE=default"), good.clone(), 4),
        ("unknown args", with("CNI_ARGS", "EVIL=1"), good.clone(), 4),
        ("bad subnet", pod.env("ADD"), {
            let mut c = net.config("1.0.0");
            c["subnet"] = json!("172.30.0.1/33");
            c.to_string().into_bytes()
        }, 7),
    ];
    for (what, env, stdin, code) in cases {
        let out = plugin(env, stdin).await;
        assert_eq!(out.error_code(), code, "{what}: {out:?}");
        assert!(!out.json()["msg"].as_str().unwrap().is_empty(), "{what}");
    }
    // Nothing anywhere: no network, no records, sandbox still on `none`.
    let exists = docker()
        .inspect_network(&net.name, None::<bollard::query_parameters::InspectNetworkOptions>)
        .await
        .is_ok();
    assert!(!exists, "network must not have been created");
    assert!(net.records().is_empty());
    assert!(pod.endpoints().await.contains_key("none"));
    pod.remove().await;
    net.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_hostname_is_skipped_and_logged_not_registered() {
    let net = TestNet::new("skip");
    let pod = Sandbox::start("skip-1", "default", "bad_host", CLUSTER_DNS).await;
    let out = add(&net, &pod, "1.0.0").await;
    out.ok();
    assert!(out.stderr.contains("skipped names") && out.stderr.contains("bad_host"), "{}", out.stderr);
    let record = std::fs::read_to_string(net.record_path(&pod.id)).unwrap();
    assert!(!record.contains("bad_host"), "{record}");
    assert!(record.contains("skip-1.default"), "{record}");
    del(&net, &pod, "1.0.0").await.ok();
    pod.remove().await;
    net.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_ready_on_a_live_engine_and_code_50_when_it_is_not() {
    let net = TestNet::new("status");
    let status = vec![("CNI_COMMAND".to_string(), "STATUS".to_string())];
    plugin(status.clone(), net.config("1.1.0").to_string().into_bytes()).await.ok();

    // A stopped engine: its socket file is left behind but nothing listens (refused),
    // or the socket is gone.
    let dir = std::path::PathBuf::from(format!("/run/smarter-cni-test/stopped-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stale = dir.join("docker.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    for socket in [stale.clone(), dir.join("missing.sock")] {
        let mut conf = net.config("1.1.0");
        conf["dockerHost"] = json!(format!("unix://{}", socket.display()));
        let out = plugin(status.clone(), conf.to_string().into_bytes()).await;
        assert_eq!(out.error_code(), 50, "{out:?}");
        assert!(out.json()["msg"].as_str().unwrap().contains("is dockerd running?"));
    }
    std::fs::remove_dir_all(&dir).unwrap();
    net.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_or_hung_engine_is_code_11_within_two_seconds() {
    let net = TestNet::new("hung");
    let pod = Sandbox::start("hung-1", "default", "hung", CLUSTER_DNS).await;
    // A daemon that accepts connections and never answers.
    let dir = std::path::PathBuf::from(format!("/run/smarter-cni-test/hung-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("docker.sock");
    let _ = std::fs::remove_file(&socket);
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let mut conf = net.config("1.0.0");
    conf["dockerHost"] = json!(format!("unix://{}", socket.display()));
    let out = plugin(pod.env("ADD"), conf.to_string().into_bytes()).await;
    assert_eq!(out.error_code(), 11, "{out:?}");
    // Bound checked generously: the guarantee is "never a hang", the budget is 2 s.
    assert!(out.elapsed < Duration::from_secs(5), "took {:?}", out.elapsed);
    drop(listener);
    let mut conf = net.config("1.0.0");
    conf["dockerHost"] = json!("unix:///nonexistent/docker.sock");
    let out = plugin(pod.env("ADD"), conf.to_string().into_bytes()).await;
    assert_eq!(out.error_code(), 11);
    assert!(out.json()["msg"].as_str().unwrap().contains("/nonexistent/docker.sock"));
    std::fs::remove_dir_all(&dir).unwrap();
    pod.remove().await;
    net.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_never_touches_the_engine() {
    let out = plugin(
        vec![("CNI_COMMAND".into(), "VERSION".into())],
        br#"{"cniVersion":"1.0.0","dockerHost":"unix:///nonexistent.sock"}"#.to_vec(),
    )
    .await;
    let doc = out.ok().json();
    assert_eq!(doc["cniVersion"], "1.0.0");
    let versions: Vec<&str> = doc["supportedVersions"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(versions, ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
    assert!(out.stderr.is_empty(), "successful VERSION logs nothing: {}", out.stderr);
}

//! hostPort in Docker mode: cri-dockerd sets a pod's hostPorts as the sandbox's
//! `PortBindings` and Docker publishes them when the plugin connects the sandbox. What is
//! left to the plugin: refuse a port someone else holds, clearly, before Docker is asked.

use crate::cni::{code, CniError};
use crate::mode::docker::engine::{Container, Engine, PortInUse, PortMapping, Publisher};
use crate::mode::docker::engine_error;
use crate::plugin::short;

/// Refuses a hostPort that is already held before Docker is asked to publish it. A connect
/// that fails on a held port leaves the sandbox with an eth0 still on the bridge, its address
/// back in Docker's pool, and no API call removes it (20.10 and 26.1): the failed ADD would
/// not be clean. Costs one list call, and only pods with hostPorts pay it.
pub async fn ensure_free(engine: &Engine, sandbox: &Container) -> Result<(), CniError> {
    let publishers = engine.publishers().await.map_err(engine_error)?;
    for wanted in &sandbox.port_bindings {
        if let Some(holder) = holder_of(&publishers, wanted, &sandbox.id) {
            return Err(host_port_held(wanted, Some(holder)));
        }
        if in_use_on_node(wanted) {
            return Err(host_port_held(wanted, None));
        }
    }
    Ok(())
}

/// The failure path of a connect that hit a held port: who has it now, if Docker knows.
/// Docker has left this sandbox unusable (see `ensure_free`); after the failed
/// ADD the runtime deletes it and starts the pod in a new one.
pub async fn taken(engine: &Engine, sandbox: &Container, in_use: &PortInUse) -> CniError {
    let same_port = |b: &&PortMapping| b.host_port == in_use.host_port;
    let same_protocol = |b: &&PortMapping| in_use.protocol.as_ref().is_none_or(|p| *p == b.protocol);
    let fallback = PortMapping {
        host_port: in_use.host_port,
        protocol: in_use.protocol.clone().unwrap_or_else(|| "tcp".into()),
        host_ip: String::new(),
        container_port: 0,
    };
    let wanted = sandbox.port_bindings.iter().filter(same_port).find(same_protocol).unwrap_or(&fallback);
    let publishers = engine.publishers().await.unwrap_or_default();
    let mut err = host_port_held(wanted, holder_of(&publishers, wanted, &sandbox.id));
    err.msg.push_str(&format!("; Docker left sandbox {} unusable, the runtime replaces it", short(&sandbox.id)));
    err
}

fn holder_of<'a>(publishers: &'a [Publisher], wanted: &PortMapping, sandbox: &str) -> Option<&'a Publisher> {
    publishers.iter().filter(|p| p.id != sandbox).find(|p| p.ports.iter().any(|held| held.overlaps(wanted)))
}

/// The error for a hostPort someone else has: a pod, another container of this engine, or
/// (no holder) a process on the node.
fn host_port_held(wanted: &PortMapping, holder: Option<&Publisher>) -> CniError {
    let port = wanted.host_side();
    let msg = match holder {
        Some(holder) => {
            let who = match (holder.labels.get("io.kubernetes.pod.namespace"), holder.labels.get("io.kubernetes.pod.name")) {
                (Some(namespace), Some(pod)) => format!("pod {namespace}/{pod}"),
                _ => format!("container {} (not a pod)", holder.name),
            };
            format!(
                "hostPort {port} is already held by {who} (container {}): one host port serves one pod per node; \
                 stop that pod or give one of them another hostPort",
                short(&holder.id)
            )
        }
        None => format!(
            "hostPort {port} is in use on the node by a process that is not a container of this Docker engine: \
             find it with `ss -lnptu 'sport = :{}'`, stop it or give the pod another hostPort",
            wanted.host_port
        ),
    };
    CniError::new(code::ENGINE_FAILURE, msg)
}

/// Whether a process on the node (a node service, another engine's docker-proxy) listens on
/// the port, which Docker's own proxy would then fail to bind. A probe bind that is released
/// at once; any error but "in use" is left for Docker to report.
fn in_use_on_node(wanted: &PortMapping) -> bool {
    let ip = match wanted.host_ip.as_str() {
        "" => std::net::IpAddr::from(std::net::Ipv4Addr::UNSPECIFIED),
        ip => match ip.parse() {
            Ok(ip) => ip,
            Err(_) => return false,
        },
    };
    let address = std::net::SocketAddr::new(ip, wanted.host_port);
    let probe = match wanted.protocol.as_str() {
        "tcp" => std::net::TcpListener::bind(address).map(drop),
        "udp" => std::net::UdpSocket::bind(address).map(drop),
        _ => return false,
    };
    matches!(probe, Err(e) if e.kind() == std::io::ErrorKind::AddrInUse)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(host_port: u16, protocol: &str) -> PortMapping {
        PortMapping { host_port, protocol: protocol.into(), host_ip: String::new(), container_port: 80 }
    }

    fn publisher(id: &str, pod: Option<(&str, &str)>, ports: Vec<PortMapping>) -> Publisher {
        let mut labels = std::collections::HashMap::new();
        if let Some((namespace, name)) = pod {
            labels.insert("io.kubernetes.pod.namespace".to_string(), namespace.to_string());
            labels.insert("io.kubernetes.pod.name".to_string(), name.to_string());
        }
        Publisher { id: id.into(), name: format!("k8s_POD_{id}"), labels, ports }
    }

    #[test]
    fn the_holder_of_a_host_port_is_never_the_sandbox_itself() {
        let publishers = [
            publisher("self0000000000", Some(("default", "me")), vec![mapping(8080, "tcp")]),
            publisher("dns00000000000", Some(("iot", "dns-0")), vec![mapping(8080, "udp")]),
            publisher("web00000000000", Some(("default", "web-0")), vec![mapping(8080, "tcp")]),
        ];
        assert_eq!(holder_of(&publishers, &mapping(8080, "tcp"), "self0000000000").map(|p| p.id.as_str()), Some("web00000000000"));
        assert_eq!(holder_of(&publishers, &mapping(8080, "udp"), "self0000000000").map(|p| p.id.as_str()), Some("dns00000000000"));
        assert!(holder_of(&publishers, &mapping(8081, "tcp"), "self0000000000").is_none());
    }

    #[test]
    fn host_port_errors_name_the_holder_and_the_way_out() {
        let pod = publisher("3eaa7b224ee591edec", Some(("default", "web-0")), vec![mapping(8080, "tcp")]);
        let err = host_port_held(&mapping(8080, "tcp"), Some(&pod));
        assert_eq!(err.code, code::ENGINE_FAILURE);
        assert_eq!(
            err.msg,
            "hostPort 8080/tcp is already held by pod default/web-0 (container 3eaa7b224ee5): one host port serves one pod \
             per node; stop that pod or give one of them another hostPort"
        );
        let plain = publisher("0123456789abcdef", None, vec![mapping(8080, "tcp")]);
        assert!(host_port_held(&mapping(8080, "tcp"), Some(&plain)).msg.contains("container k8s_POD_0123456789abcdef (not a pod)"));
        let node = host_port_held(&mapping(5353, "udp"), None).msg;
        assert!(node.contains("hostPort 5353/udp is in use on the node") && node.contains("ss -lnptu 'sport = :5353'"), "{node}");
    }

    #[test]
    fn a_listening_process_is_seen_and_its_port_is_left_alone() {
        let local = |port: u16, protocol: &str| PortMapping { host_ip: "127.0.0.1".into(), ..mapping(port, protocol) };
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        assert!(in_use_on_node(&local(port, "tcp")));
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        assert!(tcp.accept().is_ok(), "the holder still listens");
        drop(tcp);
        assert!(!in_use_on_node(&local(port, "tcp")));
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        assert!(in_use_on_node(&local(port, "udp")));
        assert!(!in_use_on_node(&local(port, "sctp")), "not probed");
        assert!(!in_use_on_node(&PortMapping { host_ip: "not an address".into(), ..local(port, "udp") }));
    }
}

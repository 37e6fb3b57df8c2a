//! Real traffic across network namespaces for the bridge-mode tests: servers that answer
//! with the peer address they saw, and clients, each on a thread inside a namespace (the
//! test process never changes its own). A namespace is a name under /run/netns or a path.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const SHORT: Duration = Duration::from_millis(700);

fn ns_path(ns: &str) -> String {
    if ns.starts_with('/') {
        ns.to_string()
    } else {
        format!("/run/netns/{ns}")
    }
}

/// Runs `f` on a thread inside the namespace (children it spawns, e.g. `nft`, inherit it).
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            smarter_cni::netns::enter(ns_path(ns).as_ref()).expect("setns");
            f()
        })
        .join()
        .expect("thread in netns")
    })
}

/// TCP and UDP servers in a namespace that answer every connection or datagram with
/// `<tag> <peer address>`; stopped on drop.
pub struct Echo {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Echo {
    pub fn start(ns: &str, tag: &'static str, tcp: u16, udp: u16) -> Echo {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let ns_path = ns_path(ns);
        let (s, path) = (stop.clone(), ns_path.clone());
        let ready = ready_tx.clone();
        let tcp_thread = std::thread::spawn(move || {
            smarter_cni::netns::enter(path.as_ref()).unwrap();
            let listener = TcpListener::bind(("0.0.0.0", tcp)).unwrap();
            listener.set_nonblocking(true).unwrap();
            ready.send(()).unwrap();
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, peer)) => {
                        let _ = conn.write_all(format!("{tag} {peer}").as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        let s = stop.clone();
        let udp_thread = std::thread::spawn(move || {
            smarter_cni::netns::enter(ns_path.as_ref()).unwrap();
            let socket = UdpSocket::bind(("0.0.0.0", udp)).unwrap();
            socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 64];
            while !s.load(Ordering::Relaxed) {
                if let Ok((_, peer)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(format!("{tag} {peer}").as_bytes(), peer);
                }
            }
        });
        ready_rx.recv().unwrap();
        ready_rx.recv().unwrap();
        Echo { stop, threads: vec![tcp_thread, udp_thread] }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What a TCP server at `to` answers a client in `ns`, or the error.
pub fn tcp_from(ns: &str, to: (Ipv4Addr, u16)) -> Result<String, String> {
    in_ns(ns, || {
        let mut conn = TcpStream::connect_timeout(&SocketAddr::from(to), SHORT).map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(SHORT)).unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).map_err(|e| e.to_string())?;
        Ok(answer)
    })
}

pub fn udp_from(ns: &str, to: (Ipv4Addr, u16)) -> Result<String, String> {
    in_ns(ns, || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        socket.set_read_timeout(Some(SHORT)).unwrap();
        socket.send_to(b"hi", SocketAddr::from(to)).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let (n, _) = socket.recv_from(&mut buf).map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
}

/// The answering side and the address it saw the client come from.
#[track_caller]
pub fn seen(answer: Result<String, String>) -> (String, Ipv4Addr) {
    let answer = answer.expect("an answer");
    let (tag, peer) = answer.split_once(' ').unwrap();
    (tag.to_string(), peer.parse::<SocketAddr>().unwrap().ip().to_string().parse().unwrap())
}


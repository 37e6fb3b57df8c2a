//! A minimal CRI client: gRPC unary calls over HTTP/2 (h2) on containerd's unix socket.
//! A gRPC message is a 5-byte prefix (compressed flag 0, big-endian length) and the protobuf
//! bytes; the outcome comes in the `grpc-status`/`grpc-message` trailers (or in the headers
//! of a trailers-only response).
#![allow(dead_code)]

use super::api::*;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::fmt;
use std::time::Duration;
use tokio::net::UnixStream;

const SERVICE: &str = "runtime.v1.RuntimeService";

/// A failed call: transport trouble (`code` None) or a gRPC status other than OK.
#[derive(Debug, Clone)]
pub struct CriError {
    pub method: String,
    pub code: Option<u32>,
    pub message: String,
}

impl fmt::Display for CriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "CRI {}: grpc-status {code} ({}): {}", self.method, code_name(code), self.message),
            None => write!(f, "CRI {}: {}", self.method, self.message),
        }
    }
}

impl std::error::Error for CriError {}

fn code_name(code: u32) -> &'static str {
    match code {
        1 => "Cancelled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        9 => "FailedPrecondition",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        _ => "other",
    }
}

/// One HTTP/2 connection to the CRI socket; cheap to clone, calls may run concurrently.
/// The connection task lives on the tokio runtime that called `connect`.
#[derive(Clone)]
pub struct CriClient {
    socket: String,
    send: h2::client::SendRequest<Bytes>,
    /// Deadline of every call (the kubelet's default runtime-request-timeout is 2 min).
    pub timeout: Duration,
}

impl CriClient {
    pub async fn connect(socket: &str) -> Result<CriClient, CriError> {
        let err = |m: String| CriError { method: "connect".into(), code: None, message: m };
        let io = UnixStream::connect(socket)
            .await
            .map_err(|e| err(format!("{socket}: {e} (is the daemon up? run scripts/containerd.sh start)")))?;
        let (send, conn) = h2::client::handshake(io).await.map_err(|e| err(format!("HTTP/2 handshake on {socket}: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(CriClient { socket: socket.to_string(), send, timeout: Duration::from_secs(120) })
    }

    /// One unary call: `Req` framed, `Resp` decoded, gRPC status checked.
    pub async fn call<Req: prost::Message, Resp: prost::Message + Default>(
        &self,
        method: &str,
        request: &Req,
    ) -> Result<Resp, CriError> {
        let full = format!("/{SERVICE}/{method}");
        match tokio::time::timeout(self.timeout, self.call_inner(&full, request)).await {
            Ok(r) => r,
            Err(_) => Err(CriError { method: full, code: None, message: format!("no answer within {:?}", self.timeout) }),
        }
    }

    async fn call_inner<Req: prost::Message, Resp: prost::Message + Default>(
        &self,
        method: &str,
        request: &Req,
    ) -> Result<Resp, CriError> {
        let err = |m: String| CriError { method: method.to_string(), code: None, message: m };
        let mut body = BytesMut::with_capacity(5 + request.encoded_len());
        body.put_u8(0);
        body.put_u32(request.encoded_len() as u32);
        request.encode(&mut body).map_err(|e| err(format!("encode: {e}")))?;

        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://localhost{method}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .map_err(|e| err(format!("request: {e}")))?;
        let mut send = self.send.clone().ready().await.map_err(|e| err(format!("connection to {}: {e}", self.socket)))?;
        let (response, mut stream) = send.send_request(req, false).map_err(|e| err(format!("send: {e}")))?;
        stream.send_data(body.freeze(), true).map_err(|e| err(format!("send body: {e}")))?;

        let response = response.await.map_err(|e| err(format!("response: {e}")))?;
        let (head, mut recv) = response.into_parts();
        if head.status != http::StatusCode::OK {
            return Err(err(format!("HTTP status {}", head.status)));
        }
        // Trailers-only response: the status is in the headers.
        if let Some(status) = grpc_status(method, &head.headers) {
            status?;
        }
        let mut data = BytesMut::new();
        while let Some(chunk) = recv.data().await {
            let chunk = chunk.map_err(|e| err(format!("body: {e}")))?;
            let _ = recv.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        let trailers = recv.trailers().await.map_err(|e| err(format!("trailers: {e}")))?.unwrap_or_default();
        match grpc_status(method, &trailers) {
            Some(status) => status?,
            None => return Err(err("no grpc-status in trailers".into())),
        }
        let mut data = data.freeze();
        if data.len() < 5 {
            return Err(err(format!("response of {} bytes, no gRPC message", data.len())));
        }
        if data.get_u8() != 0 {
            return Err(err("compressed response (not requested)".into()));
        }
        let len = data.get_u32() as usize;
        if data.len() != len {
            return Err(err(format!("gRPC frame says {len} bytes, got {}", data.len())));
        }
        Resp::decode(data).map_err(|e| err(format!("decode: {e}")))
    }

    pub async fn version(&self) -> Result<VersionResponse, CriError> {
        self.call("Version", &VersionRequest { version: "v1".into() }).await
    }

    pub async fn status(&self, verbose: bool) -> Result<StatusResponse, CriError> {
        self.call("Status", &StatusRequest { verbose }).await
    }

    /// The `NetworkReady` condition: (status, reason: message).
    pub async fn network_ready(&self) -> Result<(bool, String), CriError> {
        let st = self.status(false).await?;
        let cond = st.status.unwrap_or_default().conditions.into_iter().find(|c| c.r#type == "NetworkReady");
        Ok(cond.map(|c| (c.status, format!("{}: {}", c.reason, c.message))).unwrap_or((false, "no NetworkReady condition".into())))
    }

    pub async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String, CriError> {
        let r: RunPodSandboxResponse =
            self.call("RunPodSandbox", &RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: String::new() }).await?;
        Ok(r.pod_sandbox_id)
    }

    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        let _: Empty = self.call("StopPodSandbox", &PodSandboxIdRequest { pod_sandbox_id: id.into() }).await?;
        Ok(())
    }

    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        let _: Empty = self.call("RemovePodSandbox", &PodSandboxIdRequest { pod_sandbox_id: id.into() }).await?;
        Ok(())
    }

    pub async fn pod_sandbox_status(&self, id: &str, verbose: bool) -> Result<PodSandboxStatusResponse, CriError> {
        self.call("PodSandboxStatus", &PodSandboxStatusRequest { pod_sandbox_id: id.into(), verbose }).await
    }

    pub async fn list_pod_sandbox(&self, filter: Option<PodSandboxFilter>) -> Result<Vec<PodSandbox>, CriError> {
        let r: ListPodSandboxResponse = self.call("ListPodSandbox", &ListPodSandboxRequest { filter }).await?;
        Ok(r.items)
    }

    pub async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig, sandbox_config: &PodSandboxConfig) -> Result<String, CriError> {
        let r: CreateContainerResponse = self
            .call(
                "CreateContainer",
                &CreateContainerRequest {
                    pod_sandbox_id: sandbox_id.into(),
                    config: Some(config.clone()),
                    sandbox_config: Some(sandbox_config.clone()),
                },
            )
            .await?;
        Ok(r.container_id)
    }

    pub async fn start_container(&self, id: &str) -> Result<(), CriError> {
        let _: Empty = self.call("StartContainer", &ContainerIdRequest { container_id: id.into() }).await?;
        Ok(())
    }

    pub async fn stop_container(&self, id: &str, timeout_s: i64) -> Result<(), CriError> {
        let _: Empty = self.call("StopContainer", &StopContainerRequest { container_id: id.into(), timeout: timeout_s }).await?;
        Ok(())
    }

    pub async fn remove_container(&self, id: &str) -> Result<(), CriError> {
        let _: Empty = self.call("RemoveContainer", &ContainerIdRequest { container_id: id.into() }).await?;
        Ok(())
    }

    pub async fn exec_sync(&self, container_id: &str, cmd: &[&str], timeout_s: i64) -> Result<ExecSyncResponse, CriError> {
        self.call(
            "ExecSync",
            &ExecSyncRequest { container_id: container_id.into(), cmd: cmd.iter().map(|s| s.to_string()).collect(), timeout: timeout_s },
        )
        .await
    }
}

/// `grpc-status` (and the percent-encoded `grpc-message`) from a header map, if present.
fn grpc_status(method: &str, headers: &http::HeaderMap) -> Option<Result<(), CriError>> {
    let code: u32 = headers.get("grpc-status")?.to_str().ok()?.trim().parse().ok()?;
    if code == 0 {
        return Some(Ok(()));
    }
    let message = headers.get("grpc-message").map(|m| percent_decode(m.as_bytes())).unwrap_or_default();
    Some(Err(CriError { method: method.to_string(), code: Some(code), message }))
}

fn percent_decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let Ok(b) = u8::from_str_radix(std::str::from_utf8(&s[i + 1..i + 3]).unwrap_or("zz"), 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

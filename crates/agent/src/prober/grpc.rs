//! The gRPC prober: `grpc.health.v1.Health/Check` over plaintext HTTP/2, as the kubelet's
//! (which never uses TLS for gRPC probes). The message is one optional string field, so it
//! is encoded by hand rather than pulling in a gRPC stack for a single call.

use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{header, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::http::USER_AGENT;
use super::probe::{dial_error, Outcome};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcTarget {
    pub host: String,
    pub port: u16,
    pub service: String,
}

/// HealthCheckResponse.ServingStatus names, by number.
fn status_name(n: u64) -> &'static str {
    match n {
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "UNKNOWN",
    }
}

pub async fn probe(target: &GrpcTarget, timeout: Duration) -> Outcome {
    let addr = if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    match tokio::time::timeout(timeout, check(target, &addr)).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Failure(format!(
            "timeout: health rpc did not complete within {}s",
            timeout.as_secs_f64()
        )),
    }
}

async fn check(target: &GrpcTarget, addr: &str) -> Outcome {
    let tcp = match TcpStream::connect((target.host.as_str(), target.port)).await {
        Ok(t) => t,
        Err(e) => {
            return Outcome::Failure(format!(
                "failed to connect service {addr:?}: {}",
                dial_error(addr, &e)
            ))
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    {
        Ok(x) => x,
        Err(e) => return Outcome::Failure(format!("failed to connect service {addr:?}: {e}")),
    };
    let driver = tokio::spawn(conn);
    let outcome = call(&mut sender, target, addr).await;
    driver.abort();
    outcome
}

async fn call(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    target: &GrpcTarget,
    addr: &str,
) -> Outcome {
    let req = Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header(header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .header(header::USER_AGENT, USER_AGENT)
        .body(Full::new(Bytes::from(encode_request(&target.service))));
    let req = match req {
        Ok(r) => r,
        Err(e) => return Outcome::Error(e.to_string()),
    };
    let resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => return Outcome::Failure(format!("health rpc failed: {e}")),
    };
    let headers = resp.headers().clone();
    let collected = match resp.into_body().collect().await {
        Ok(c) => c,
        Err(e) => return Outcome::Failure(format!("health rpc failed: {e}")),
    };
    // A trailers-only answer carries grpc-status in the headers.
    let trailers = collected.trailers().cloned().unwrap_or(headers);
    let code = trailers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("0");
    if code != "0" {
        let msg = trailers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        return Outcome::Failure(format!("health rpc failed with status code {code}: {msg}"));
    }
    match decode_response(collected.to_bytes()) {
        Some(1) => Outcome::Success(String::new()),
        Some(n) => Outcome::Failure(format!(
            "service unhealthy (responded with {:?})",
            status_name(n)
        )),
        None => Outcome::Failure("health rpc returned a malformed response".into()),
    }
}

/// A length-prefixed gRPC message holding HealthCheckRequest{service}.
fn encode_request(service: &str) -> Vec<u8> {
    let mut msg = Vec::new();
    if !service.is_empty() {
        msg.push(0x0a);
        put_varint(&mut msg, service.len() as u64);
        msg.extend_from_slice(service.as_bytes());
    }
    let mut out = vec![0u8];
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(&msg);
    out
}

/// The `status` (field 1) of a length-prefixed HealthCheckResponse; 0 when absent.
fn decode_response(mut frame: Bytes) -> Option<u64> {
    if frame.len() < 5 || frame[0] != 0 {
        return None;
    }
    frame.advance(1);
    let len = frame.get_u32() as usize;
    if frame.len() < len {
        return None;
    }
    let mut msg = frame.slice(..len);
    let mut status = 0;
    while msg.has_remaining() {
        let key = get_varint(&mut msg)?;
        match key & 7 {
            0 => {
                let v = get_varint(&mut msg)?;
                if key >> 3 == 1 {
                    status = v;
                }
            }
            2 => {
                let l = usize::try_from(get_varint(&mut msg)?).ok()?;
                if msg.remaining() < l {
                    return None;
                }
                msg.advance(l);
            }
            1 if msg.remaining() >= 8 => msg.advance(8),
            5 if msg.remaining() >= 4 => msg.advance(4),
            _ => return None,
        }
    }
    Some(status)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &mut Bytes) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        if !b.has_remaining() {
            return None;
        }
        let byte = b.get_u8();
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_encoding() {
        assert_eq!(encode_request(""), vec![0, 0, 0, 0, 0]);
        assert_eq!(
            encode_request("ab"),
            vec![0, 0, 0, 0, 4, 0x0a, 2, b'a', b'b']
        );
    }

    #[test]
    fn response_decoding() {
        assert_eq!(
            decode_response(Bytes::from_static(&[0, 0, 0, 0, 2, 0x08, 1])),
            Some(1)
        );
        assert_eq!(
            decode_response(Bytes::from_static(&[0, 0, 0, 0, 2, 0x08, 2])),
            Some(2)
        );
        // An empty message is the default: UNKNOWN.
        assert_eq!(
            decode_response(Bytes::from_static(&[0, 0, 0, 0, 0])),
            Some(0)
        );
        assert_eq!(
            decode_response(Bytes::from_static(&[0, 0, 0, 0, 9, 8])),
            None
        );
        assert_eq!(decode_response(Bytes::from_static(&[1])), None);
    }
}

//! Forwarding one request to an agent, upgrade-aware: when the agent answers 101 Switching
//! Protocols (SPDY/3.1 or WebSocket), the same 101 goes back to the client and, once both
//! sides have switched, bytes are copied both ways until either side closes. Everything
//! else (logs, stats) streams back as the agent answered it.

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::header;
use hyper_util::rt::TokioIo;

use super::NodeClient;
use crate::status::ApiError;

/// Request headers that belong to the hop between client and API server.
const NOT_FORWARDED: &[header::HeaderName] = &[
    header::AUTHORIZATION,
    header::HOST,
    header::PROXY_AUTHORIZATION,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
];

pub async fn forward(
    client: &NodeClient,
    node: &str,
    target: &str,
    mut req: Request,
) -> Result<Response, ApiError> {
    let wants_upgrade = req.headers().contains_key(header::UPGRADE);
    let client_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut out = http::Request::builder()
        .method(parts.method.clone())
        .uri(target);
    for (name, value) in &parts.headers {
        if !NOT_FORWARDED.contains(name) {
            out = out.header(name, value);
        }
    }
    // Upgrade requests carry no body; others may (a POST through nodes/proxy).
    let body = if wants_upgrade { Body::empty() } else { body };
    let out = out
        .body(body)
        .map_err(|e| ApiError::bad_request(format!("cannot forward the request: {e}")))?;
    let mut resp = client.send(node, out).await?;

    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return Ok(resp.map(Body::new));
    }
    let Some(client_upgrade) = client_upgrade else {
        return Err(ApiError::new(
            502,
            "ServiceUnavailable",
            "the node switched protocols on a request that did not ask to",
        ));
    };
    let node_upgrade = hyper::upgrade::on(&mut resp);
    let mut answer = Response::builder().status(http::StatusCode::SWITCHING_PROTOCOLS);
    for (name, value) in resp.headers() {
        answer = answer.header(name, value);
    }
    let node = node.to_string();
    tokio::spawn(async move {
        let (from_client, from_node) = match tokio::join!(client_upgrade, node_upgrade) {
            (Ok(c), Ok(n)) => (c, n),
            (c, n) => {
                tracing::debug!(%node, client = ?c.err(), node_side = ?n.err(), "upgrade failed");
                return;
            }
        };
        let mut a = TokioIo::new(from_client);
        let mut b = TokioIo::new(from_node);
        match tokio::io::copy_bidirectional(&mut a, &mut b).await {
            Ok((up, down)) => tracing::debug!(%node, up, down, "stream proxy finished"),
            Err(e) => tracing::debug!(%node, error = %e, "stream proxy ended"),
        }
    });
    answer
        .body(Body::empty())
        .map_err(|e| ApiError::internal(format!("building the 101 answer: {e}")))
}

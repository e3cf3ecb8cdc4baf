//! What the gRPC server answers for requests that never reach a handler (DESIGN.md, "Errors"):
//! a body that does not decode is INVALID_ARGUMENT, a body over the size limit
//! RESOURCE_EXHAUSTED — never INTERNAL, which tonic answers for the first, nor OUT_OF_RANGE,
//! which it answers for the second. Both come from tonic's codec before any handler runs, as
//! "trailers-only" responses whose status sits in the response headers; this layer rewrites
//! those headers, adds schein's machine-readable reason, and leaves every other response alone.

use std::task::{Context, Poll};

use prost::Message;
use schein_proto::v1::{ErrorDetail, ErrorReason};
use tonic::Code;
use tonic::codegen::http::{HeaderMap, HeaderValue, Response};

/// tonic's messages for the two cases, percent-encoded as they travel in `grpc-message`.
const UNDECODABLE: &str = "failed%20to%20decode";
const TOO_LARGE: &str = "Error,%20decoded%20message%20length%20too%20large";

/// The layer to put in front of every service of the server.
#[derive(Clone, Copy, Debug, Default)]
pub struct RefusalCodes;

impl<S> tower::Layer<S> for RefusalCodes {
    type Service = WithRefusalCodes<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithRefusalCodes { inner }
    }
}

/// A service whose codec refusals carry the right code (see the module's doc).
#[derive(Clone, Debug)]
pub struct WithRefusalCodes<S> {
    inner: S,
}

impl<S, Request, Body> tower::Service<Request> for WithRefusalCodes<S>
where
    S: tower::Service<Request, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = futures::future::MapOk<S::Future, fn(Response<Body>) -> Response<Body>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        use futures::TryFutureExt;
        self.inner.call(request).map_ok(fix_codes)
    }
}

fn fix_codes<Body>(mut response: Response<Body>) -> Response<Body> {
    rewrite(response.headers_mut());
    response
}

/// Rewrites the status of a codec refusal in `headers`; anything else stays as it is.
fn rewrite(headers: &mut HeaderMap) {
    let status = headers.get("grpc-status").and_then(|v| v.to_str().ok());
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (code, reason, text) = match status {
        Some("13") if message.starts_with(UNDECODABLE) => (
            Code::InvalidArgument,
            ErrorReason::InvalidArgument,
            "the request cannot be decoded: it is not a message of this call",
        ),
        Some("11") if message.starts_with(TOO_LARGE) => (
            Code::ResourceExhausted,
            ErrorReason::InvalidArgument,
            "the request is larger than this node accepts",
        ),
        _ => return,
    };
    headers.insert("grpc-status", HeaderValue::from(code as i32));
    if let Ok(value) = HeaderValue::from_str(&text.replace(' ', "%20")) {
        headers.insert("grpc-message", value);
    }
    let detail = ErrorDetail {
        reason: reason as i32,
    }
    .encode_to_vec();
    let encoded = data_encoding::BASE64_NOPAD.encode(&detail);
    if let Ok(value) = HeaderValue::from_str(&encoded) {
        headers.insert("grpc-status-details-bin", value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(status: &str, message: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", HeaderValue::from_str(status).unwrap());
        headers.insert("grpc-message", HeaderValue::from_str(message).unwrap());
        headers
    }

    #[test]
    fn codec_refusals_get_their_codes_and_others_stay() {
        let mut undecodable = headers("13", "failed%20to%20decode%20Protobuf%20message");
        rewrite(&mut undecodable);
        assert_eq!(undecodable["grpc-status"], "3");
        assert!(undecodable.contains_key("grpc-status-details-bin"));
        let mut large = headers(
            "11",
            "Error,%20decoded%20message%20length%20too%20large:%201",
        );
        rewrite(&mut large);
        assert_eq!(large["grpc-status"], "8");
        let mut ours = headers("13", "the%20node%20could%20not%20store%20this");
        rewrite(&mut ours);
        assert_eq!(ours["grpc-status"], "13", "a handler's own status is kept");
    }
}

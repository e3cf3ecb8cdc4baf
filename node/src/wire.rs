//! What the gRPC server answers for requests that never reach a handler (DESIGN.md, "Errors"):
//! a body that does not decode, or holds no message, is INVALID_ARGUMENT, a body over the size
//! limit RESOURCE_EXHAUSTED — never INTERNAL, which tonic answers for the first, nor
//! OUT_OF_RANGE, which it answers for the second. Both come from tonic's codec before any
//! handler runs, as "trailers-only" responses whose status sits in the response headers;
//! [`RefusalCodes`] rewrites those headers, adds schein's machine-readable reason, and leaves
//! every other response alone.
//!
//! Every call of schein (and of gRPC health) takes exactly one request message; tonic would
//! read a second one and silently drop it. [`OneMessage`] refuses such a request instead: a
//! client that sends two has a bug or is probing, and either should hear it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::Frame;
use schein_proto::v1::ErrorReason;
use tonic::Code;
use tonic::codegen::http::{HeaderMap, HeaderValue, Request, Response};

/// tonic's messages for the three cases, percent-encoded as they travel in `grpc-message`.
const UNDECODABLE: &str = "failed%20to%20decode";
const NO_MESSAGE: &str = "Missing%20request%20message";
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
        Some("13") if message.starts_with(NO_MESSAGE) => (
            Code::InvalidArgument,
            ErrorReason::InvalidArgument,
            "the request holds no message",
        ),
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
    let detail = schein_proto::error::status_details(code, text, reason);
    let encoded = data_encoding::BASE64_NOPAD.encode(&detail);
    if let Ok(value) = HeaderValue::from_str(&encoded) {
        headers.insert("grpc-status-details-bin", value);
    }
}

/// The layer that refuses a request body holding more than one gRPC message.
#[derive(Clone, Copy, Debug, Default)]
pub struct OneMessage;

impl<S> tower::Layer<S> for OneMessage {
    type Service = WithOneMessage<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithOneMessage { inner }
    }
}

/// A service whose request bodies end after their first message (see the module's doc).
#[derive(Clone, Debug)]
pub struct WithOneMessage<S> {
    inner: S,
}

impl<S> tower::Service<Request<tonic::body::Body>> for WithOneMessage<S>
where
    S: tower::Service<Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        let request = request.map(|body| {
            tonic::body::Body::new(SingleMessage {
                inner: body,
                frames: Framing::default(),
            })
        });
        self.inner.call(request)
    }
}

/// Where a request body stands in gRPC's framing: a 5-byte prefix (compression flag, length)
/// before each message.
#[derive(Debug, Default)]
struct Framing {
    /// Bytes of the current prefix read so far.
    prefix: Vec<u8>,
    /// Bytes of the current message still to come.
    remaining: u64,
    /// Messages whose prefix was read.
    messages: u32,
}

impl Framing {
    /// Follows `data` through the framing; false once a second message begins.
    fn read(&mut self, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            if self.remaining > 0 {
                let skip = data
                    .len()
                    .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                data = &data[skip..];
                self.remaining -= skip as u64;
                continue;
            }
            if self.prefix.is_empty() && self.messages >= 1 {
                return false;
            }
            let take = data.len().min(5 - self.prefix.len());
            self.prefix.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.prefix.len() == 5 {
                let mut length = &self.prefix[1..];
                self.remaining = length.get_u32().into();
                self.prefix.clear();
                self.messages += 1;
            }
        }
        true
    }
}

/// A request body that fails with INVALID_ARGUMENT where a second message would begin; tonic
/// answers the call with that status.
struct SingleMessage {
    inner: tonic::body::Body,
    frames: Framing,
}

impl http_body::Body for SingleMessage {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
            && !self.frames.read(data)
        {
            return Poll::Ready(Some(Err(schein_proto::error::refusal(
                ErrorReason::InvalidArgument,
                "a call takes exactly one request message; this request holds more",
            ))));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(length: u32) -> Vec<u8> {
        let mut framed = vec![0];
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend(std::iter::repeat_n(7, length as usize));
        framed
    }

    #[test]
    fn framing_allows_one_message_in_any_chunks_and_notices_a_second() {
        let one = message(300);
        for split in [1, 3, 5, 6, 299, 305] {
            let mut framing = Framing::default();
            assert!(framing.read(&one[..split]));
            assert!(framing.read(&one[split..]), "split at {split}");
            assert!(framing.read(&[]));
        }
        let mut two = message(10);
        two.extend(message(0));
        let mut framing = Framing::default();
        assert!(!framing.read(&two));
        let mut framing = Framing::default();
        assert!(framing.read(&two[..15]));
        assert!(!framing.read(&two[15..16]), "one byte of a second prefix");
        let mut empty = Framing::default();
        assert!(empty.read(&message(0)));
    }

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
        let details = data_encoding::BASE64_NOPAD
            .decode(undecodable["grpc-status-details-bin"].as_bytes())
            .unwrap();
        let status = tonic::Status::with_details(Code::InvalidArgument, "", details.into());
        assert_eq!(
            schein_proto::error::reason_of(&status),
            Some(ErrorReason::InvalidArgument)
        );
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

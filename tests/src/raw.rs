//! Raw gRPC calls: bytes sent as they are inside valid gRPC framing, to put garbage, unknown
//! fields or oversized bodies on the wire that no generated client would produce.

use bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

/// Sends and receives bytes unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        Ok(Some(bytes.to_vec()))
    }
}

/// Calls `path` (e.g. `/schein.v1.Office/IssueVoucher`) with `body` as the message.
pub async fn send_raw(
    channel: Channel,
    path: &'static str,
    body: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    grpc.unary(
        tonic::Request::new(body),
        PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(|r| r.into_inner())
}

/// `count` copies of an unknown length-delimited field (number 100) holding `chunk` bytes:
/// appended to a valid message, a decoder must skip them.
pub fn unknown_fields(count: usize, chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..count {
        // Tag: field 100, wire type 2 (length-delimited), as a varint.
        out.extend_from_slice(&[0xa2, 0x06]);
        prost::encoding::encode_varint(chunk as u64, &mut out);
        out.extend(std::iter::repeat_n(0x41, chunk));
    }
    out
}

/// Calls `path` with each of `messages` as its own length-prefixed message in one request body
/// (none, one, or several): what no generated client sends to a unary method.
pub async fn send_raw_messages(
    channel: Channel,
    path: &'static str,
    messages: Vec<Vec<u8>>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    grpc.client_streaming(
        tonic::Request::new(tonic::codegen::tokio_stream::iter(messages)),
        PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(|r| r.into_inner())
}

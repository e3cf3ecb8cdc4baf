//! schein's protocol, shared by the node and the CLI: the generated gRPC code of
//! `proto/schein/v1`, the voucher codec (signing, strict verification, full and short codes), the
//! calendar types the protocol speaks in, and the mapping of refusal reasons to gRPC statuses.

pub mod code;
pub mod day;
pub mod disclosure;
pub mod error;
pub mod ledger;
pub mod money;
pub mod period;
pub mod signed;
pub mod version;
pub mod voucher;

/// Generated messages and services of package `schein.v1`.
#[allow(unreachable_pub, missing_debug_implementations, clippy::all)]
pub mod v1 {
    tonic::include_proto!("schein.v1");
}

/// The encoded `FileDescriptorSet` of package `schein.v1`, for gRPC server reflection: what
/// lets `grpcurl` list and call the services without the .proto files.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/schein_v1_descriptor.bin"));

/// The benchmarks' echo service (package `schein.bench.v1`): the bare cost of one RPC.
#[allow(unreachable_pub, missing_debug_implementations, clippy::all)]
pub mod bench {
    tonic::include_proto!("schein.bench.v1");
}

/// `google.rpc.Status` and `google.rpc.ErrorInfo`: the standard form of a refusal's details.
#[allow(unreachable_pub, missing_debug_implementations, clippy::all)]
pub mod rpc {
    tonic::include_proto!("google.rpc");
}

pub use code::{FullCode, ShortCode, VoucherCode};
pub use day::Day;
pub use voucher::{KeyId, Serial, SignedVoucher, VoucherError};

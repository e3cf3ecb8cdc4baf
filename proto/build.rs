//! Compiles `schein/v1/*.proto` (with the benchmarks' echo service and the two `google.rpc`
//! messages that carry refusal reasons) with the pure-Rust `protox`
//! compiler, so that building schein needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "schein/v1/common.proto",
        "schein/v1/voucher.proto",
        "schein/v1/claim.proto",
        "schein/v1/report.proto",
        "schein/v1/office.proto",
        "schein/v1/provider.proto",
        "schein/v1/federation.proto",
        "schein/v1/identity.proto",
        "schein/bench/v1/echo.proto",
        "google/rpc/status.proto",
        "google/rpc/error_details.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    // What the node's server reflection describes: the services it serves, not the
    // benchmarks' echo service.
    let served: Vec<&str> = files
        .iter()
        .copied()
        .filter(|f| f.starts_with("schein/v1/"))
        .collect();
    let reflected = protox::compile(served, ["."])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("schein_v1_descriptor.bin"),
        prost::Message::encode_to_vec(&reflected),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}

//! Generates the tonic/prost code for `proto/creek.proto` without a system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/creek.proto");
    let file_descriptors = protox::compile(["proto/creek.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(file_descriptors)?;
    Ok(())
}

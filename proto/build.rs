//! Generates the gRPC code from `proto/` (needs `protoc`: Debian package
//! protobuf-compiler, installed by scripts/setup.sh).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("sen_descriptor.bin"))
        // Messages that carry secrets get a redacting `Debug` (src/lib.rs).
        .skip_debug([
            ".sen.v1.CreateBackupRequest",
            ".sen.v1.InitResponse",
            ".sen.v1.CreateTokenResponse",
        ])
        .compile_protos(
            &[
                "proto/sen/v1/kv.proto",
                "proto/sen/v1/cluster.proto",
                "proto/sen/v1/admin.proto",
                "proto/sen/v1/content.proto",
                "proto/sen/v1/backup.proto",
                "proto/sen/v1/node_ops.proto",
                "proto/sen/v1/access.proto",
                "proto/sen/raft/v1/raft.proto",
            ],
            &["proto"],
        )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}

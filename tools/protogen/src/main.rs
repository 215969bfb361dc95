//! Regenerates `crates/proto/src/generated.rs` from `crates/proto/proto/sealsync.proto`
//! with a pure-Rust protobuf compiler (no protoc needed). Run from the repository root:
//! `cargo run --manifest-path tools/protogen/Cargo.toml`.
fn main() {
    let fds = protox::compile(["sealsync.proto"], ["crates/proto/proto"]).expect("parse .proto");
    let out = std::env::temp_dir().join("sealsync-protogen");
    std::fs::create_dir_all(&out).expect("temp dir");
    prost_build::Config::new()
        .out_dir(&out)
        .compile_fds(fds)
        .expect("generate");
    std::fs::copy(out.join("sealsync.v1.rs"), "crates/proto/src/generated.rs").expect("copy");
}

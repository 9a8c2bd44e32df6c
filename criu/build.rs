//! Compiles `proto/*.proto` (package `criu`) with protox + prost-build, and
//! keeps the encoded descriptor set (custom `(criu)` options included) in
//! `OUT_DIR/criu_descriptors.bin` for crit's JSON rendering.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from("proto");
    println!("cargo:rerun-if-changed=proto");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&proto_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    let names: Vec<PathBuf> = files
        .iter()
        .filter_map(|p| p.file_name().map(PathBuf::from))
        .collect();

    let mut compiler = protox::Compiler::new([&proto_dir])?;
    compiler.include_imports(true);
    compiler.open_files(&names)?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("criu_descriptors.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    let mut fds = compiler.file_descriptor_set();
    fds.file
        .retain(|f| !f.name().starts_with("google/protobuf/"));
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}

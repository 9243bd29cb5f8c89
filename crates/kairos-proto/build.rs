//! Generates the prost messages and tonic clients/servers from `proto/`, and writes the
//! file descriptor set that gRPC reflection serves.

use std::env;
use std::path::{Path, PathBuf};

/// Every file we compile; imports among them are resolved through `proto/`.
const PROTOS: &[&str] = &[
    "proto/dapr/proto/common/v1/common.proto",
    "proto/dapr/proto/runtime/v1/jobs.proto",
    "proto/dapr/proto/runtime/v1/metadata.proto",
    "proto/dapr/proto/runtime/v1/dapr.proto",
    "proto/dapr/proto/runtime/v1/appcallback.proto",
    "proto/dapr/proto/scheduler/v1/scheduler.proto",
];

/// kairos's own admin service: compiled on its own, so that the descriptor set the sidecar's
/// reflection serves lists only Dapr's services.
const ADMIN_PROTO: &str = "proto/kairos/admin/v1/admin.proto";

/// kairos's steering service for apps (served by the sidecar): on its own too, for the same reason.
const STEER_PROTO: &str = "proto/kairos/runtime/v1/steer.proto";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PROTOC");
    for proto in PROTOS.iter().chain([&ADMIN_PROTO, &STEER_PROTO]) {
        println!("cargo:rerun-if-changed={proto}");
    }

    let protoc = find_protoc().unwrap_or_else(|| {
        panic!(
            "kairos-proto needs `protoc` (protobuf-compiler) to build and could not find it \
             on PATH or at /usr/bin/protoc; install it with `apt-get install -y protobuf-compiler` \
             or set PROTOC to the path of a protoc binary (3.15 or newer)"
        )
    });

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Servers may implement only some methods; the rest answer UNIMPLEMENTED, which is
        // what SDKs key their stable → alpha fallback on.
        .generate_default_stubs(true)
        .file_descriptor_set_path(out_dir.join("kairos_descriptor.bin"))
        .compile_with_config(config, PROTOS, &["proto"])
        .unwrap_or_else(|e| panic!("compiling the .proto files failed: {e}"));

    let admin_dir = out_dir.join("admin");
    std::fs::create_dir_all(&admin_dir).expect("create OUT_DIR/admin");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(find_protoc().expect("found above"));
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(true)
        .extern_path(".dapr.proto.scheduler.v1", "crate::scheduler")
        .extern_path(".dapr.proto.common.v1", "crate::common")
        // Its own directory: this run would otherwise overwrite the Dapr packages' files.
        .out_dir(&admin_dir)
        .file_descriptor_set_path(out_dir.join("kairos_admin_descriptor.bin"))
        .compile_with_config(config, &[ADMIN_PROTO], &["proto"])
        .unwrap_or_else(|e| panic!("compiling {ADMIN_PROTO} failed: {e}"));

    let steer_dir = out_dir.join("steer");
    std::fs::create_dir_all(&steer_dir).expect("create OUT_DIR/steer");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(find_protoc().expect("found above"));
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(true)
        .extern_path(".dapr.proto.runtime.v1", "crate::runtime")
        .extern_path(".dapr.proto.scheduler.v1", "crate::scheduler")
        .extern_path(".dapr.proto.common.v1", "crate::common")
        .extern_path(".kairos.admin.v1", "crate::admin")
        .out_dir(&steer_dir)
        .file_descriptor_set_path(out_dir.join("kairos_steer_descriptor.bin"))
        .compile_with_config(config, &[STEER_PROTO], &["proto"])
        .unwrap_or_else(|e| panic!("compiling {STEER_PROTO} failed: {e}"));
}

/// `PROTOC` if set (it must then exist), else `protoc` on PATH, else `/usr/bin/protoc`.
fn find_protoc() -> Option<PathBuf> {
    if let Some(path) = env::var_os("PROTOC") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Some(path);
        }
        panic!(
            "PROTOC is set to {}, which is not a file; unset it or point it at a protoc binary \
             (`apt-get install -y protobuf-compiler` installs /usr/bin/protoc)",
            path.display()
        );
    }
    env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("protoc"))
        .chain([Path::new("/usr/bin/protoc").to_path_buf()])
        .find(|candidate| candidate.is_file())
}

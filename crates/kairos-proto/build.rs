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

    compile_own(
        &out_dir,
        ADMIN_PROTO,
        "admin",
        &[(".dapr.proto.scheduler.v1", "crate::scheduler"), (".dapr.proto.common.v1", "crate::common")],
    );
    compile_own(
        &out_dir,
        STEER_PROTO,
        "steer",
        &[
            (".dapr.proto.runtime.v1", "crate::runtime"),
            (".dapr.proto.scheduler.v1", "crate::scheduler"),
            (".dapr.proto.common.v1", "crate::common"),
            (".kairos.admin.v1", "crate::admin"),
        ],
    );
}

/// Compiles one of kairos's own protos on its own, into `OUT_DIR/<name>` (a run would otherwise
/// overwrite the Dapr packages' files) with its own descriptor set, the packages it imports
/// taken from the modules already generated.
fn compile_own(out_dir: &Path, proto: &str, name: &str, extern_paths: &[(&str, &str)]) {
    let dir = out_dir.join(name);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create OUT_DIR/{name}: {e}"));
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(find_protoc().expect("found above"));
    let mut builder =
        tonic_prost_build::configure().build_client(true).build_server(true).generate_default_stubs(true);
    for (proto_path, rust_path) in extern_paths {
        builder = builder.extern_path(*proto_path, *rust_path);
    }
    builder
        .out_dir(&dir)
        .file_descriptor_set_path(out_dir.join(format!("kairos_{name}_descriptor.bin")))
        .compile_with_config(config, &[proto], &["proto"])
        .unwrap_or_else(|e| panic!("compiling {proto} failed: {e}"));
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
    which::which("protoc").ok().or_else(|| Some(PathBuf::from("/usr/bin/protoc")).filter(|p| p.is_file()))
}

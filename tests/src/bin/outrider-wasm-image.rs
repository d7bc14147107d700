//! `make wasm-image`: writes the filter's `.wasm` as an OCI image layout that Istio's
//! WasmPlugin pulls once pushed, and a WasmPlugin that names the image by its digest
//! (see `outrider_harness::wasm_image` and docs/istio.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use outrider_harness::wasm_image::{render_wasmplugin, split_reference, write_layout};

#[derive(Parser)]
#[command(about = "Write the filter as an OCI image layout that Istio pulls, and its WasmPlugin")]
struct Args {
    /// The filter module, e.g. target/filter/outrider_filter.wasm.
    #[arg(long)]
    wasm: PathBuf,
    /// Where the image will be pushed, `host/repository:tag`; the layout is tagged with
    /// the tag, and the WasmPlugin's url is `oci://<reference>`.
    #[arg(long)]
    reference: String,
    /// The OCI image layout folder to write.
    #[arg(long)]
    layout: PathBuf,
    /// A WasmPlugin manifest to render with the image's url and sha256.
    #[arg(long, requires = "plugin_out")]
    plugin: Option<PathBuf>,
    /// Where to write the rendered WasmPlugin.
    #[arg(long, requires = "plugin")]
    plugin_out: Option<PathBuf>,
}

fn run(args: Args) -> Result<()> {
    let (repository, tag) = split_reference(&args.reference)?;
    let wasm =
        std::fs::read(&args.wasm).with_context(|| format!("--wasm {}", args.wasm.display()))?;
    let image = write_layout(&wasm, tag, &args.layout)?;
    println!(
        "{}: OCI image layout, tag {tag}\n  manifest {}  (spec.sha256 for oci:// URLs)\n  \
         module   {}  (spec.sha256 for https:// URLs, Envoy's remote.sha256)",
        args.layout.display(),
        image.manifest_digest,
        image.module_digest
    );
    if let (Some(plugin), Some(out)) = (args.plugin, args.plugin_out) {
        let text = std::fs::read_to_string(&plugin)
            .with_context(|| format!("--plugin {}", plugin.display()))?;
        let rendered = render_wasmplugin(&text, &format!("oci://{repository}:{tag}"), &image)?;
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&out, rendered)
            .with_context(|| format!("--plugin-out {}", out.display()))?;
        println!("{}: WasmPlugin for oci://{repository}:{tag}", out.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outrider-wasm-image: {e:#}");
            ExitCode::FAILURE
        }
    }
}

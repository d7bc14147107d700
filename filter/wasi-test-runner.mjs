// Cargo runner for wasm32-wasip1 test binaries: runs one under Node's WASI, so the
// filter's decision logic is tested as 32-bit wasm, the way Envoy runs it.
// Usage (set by the Makefile): CARGO_TARGET_WASM32_WASIP1_RUNNER="node filter/wasi-test-runner.mjs"
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import process from "node:process";

const [binary, ...args] = process.argv.slice(2);
if (!binary) {
  console.error("usage: wasi-test-runner.mjs <test.wasm> [args...]");
  process.exit(2);
}
const wasi = new WASI({
  version: "preview1",
  args: [binary, ...args],
  env: process.env,
  preopens: { "/": "/" },
  returnOnExit: true,
});
const module = await WebAssembly.compile(await readFile(binary));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exit(wasi.start(instance));

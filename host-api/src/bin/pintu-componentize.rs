//! `pintu-componentize <core.wasm> <component.wasm>`: turns the core module that `cargo build
//! --target wasm32-unknown-unknown` makes of a connector (its component type is carried in a
//! custom section written by `wit-bindgen`) into a WebAssembly component, as `plugins/build`
//! needs. A host tool rather than a guest one, since `wit-component` runs on the build machine;
//! its version is pinned by the host workspace's `Cargo.lock`, which keeps components
//! reproducible.

use std::path::PathBuf;
use std::process::ExitCode;

use wit_component::ComponentEncoder;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: pintu-componentize <core.wasm> <component.wasm>");
        return ExitCode::from(2);
    };
    match componentize(&PathBuf::from(input), &PathBuf::from(output)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pintu-componentize: {e}");
            ExitCode::FAILURE
        }
    }
}

fn componentize(input: &PathBuf, output: &PathBuf) -> Result<(), String> {
    let module =
        std::fs::read(input).map_err(|e| format!("cannot read `{}`: {e}", input.display()))?;
    let component = ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .and_then(|mut encoder| encoder.encode())
        .map_err(|e| format!("`{}` is not a connector module: {e:#}", input.display()))?;
    std::fs::write(output, component)
        .map_err(|e| format!("cannot write `{}`: {e}", output.display()))
}

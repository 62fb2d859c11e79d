//! Embeds every scenario of `catalogue/` into the crate, so `brick check` runs the built-in
//! catalogue anywhere; the test runner reads the same files at run time instead.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    println!("cargo::rerun-if-changed=catalogue");
    let dir = Path::new("catalogue");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut out = String::from(
        "/// The built-in catalogue: (file name, contents).\npub static BUILTIN: &[(&str, &str)] = &[\n",
    );
    for f in &files {
        let _ = writeln!(
            out,
            "    ({f:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/catalogue/{f}\"))),"
        );
    }
    out.push_str("];\n");
    let dest =
        Path::new(&std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into())).join("builtin.rs");
    if let Err(err) = std::fs::write(&dest, out) {
        println!("cargo::error=writing {}: {err}", dest.display());
    }
}

//! Computes the parse cache's fingerprint ([`dtk_model::cache::FINGERPRINT`]): a hash of
//! this crate's sources, manifest and version. A parsed document cached by one build is
//! read back only by a build whose parser and types are the same, byte for byte.

use std::fs;
use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let mut files = vec![root.join("Cargo.toml")];
    sources(&root.join("src"), &mut files);
    files.sort();
    // SipHash with fixed keys: the same inputs give the same value in every build.
    let mut h = DefaultHasher::new();
    h.write(env!("CARGO_PKG_VERSION").as_bytes());
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap_or(f);
        h.write(rel.to_string_lossy().as_bytes());
        h.write(&fs::read(f).unwrap_or_default());
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let text = format!("{:#018x}\n", h.finish());
    if let Err(e) = fs::write(out.join("fingerprint.rs"), text) {
        panic!("writing the parse cache fingerprint: {e}");
    }
    println!("cargo::rerun-if-changed=src");
    println!("cargo::rerun-if-changed=Cargo.toml");
}

//! Benchmarks of the catalog: publishing a large module (1,000 files, 50 MB) and
//! resolving a closure of 100 modules.
//!
//! Run with `cargo bench -p dtk-catalog`. The catalog size after one publish of the large
//! module is printed to stderr before the measurements.

#![allow(missing_docs, clippy::unwrap_used, clippy::print_stderr)]

use std::hint::black_box;
use std::path::Path;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use dtk_catalog::Catalog;

const FILES: usize = 1_000;
const TOTAL_BYTES: usize = 50 * 1024 * 1024;

/// A deterministic pseudo-random byte stream (xorshift), so half of the files do not
/// compress, like binaries and archives in real modules.
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let bytes = self.0.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

fn manifest(id: &str, version: &str, deps: &[(String, &str)]) -> String {
    let mut text = format!("dsl_version: 1.0.0\nmodule: {id}\nversion: {version}\n");
    if !deps.is_empty() {
        text.push_str("dependencies:\n");
        for (m, r) in deps {
            text.push_str(&format!("  {m}: \"{r}\"\n"));
        }
    }
    text.push_str(
        "component_defs:\n  app:\n    attributes:\n      port: {type: integer, default: 80}\n    \
         actions:\n      create:\n        commands:\n        - RUN ./bin/start\n",
    );
    text
}

/// A module directory of `FILES` files totalling `TOTAL_BYTES`: half random bytes, half
/// text, spread over 20 directories.
fn large_module(dir: &Path) {
    std::fs::write(
        dir.join("dtk.module.yaml"),
        manifest("bench/large", "1.0.0", &[]),
    )
    .unwrap();
    let per_file = TOTAL_BYTES / FILES;
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut buf = vec![0u8; per_file];
    for i in 0..FILES {
        let sub = dir.join(format!("dir{:02}", i % 20));
        std::fs::create_dir_all(&sub).unwrap();
        if i % 2 == 0 {
            noise.fill(&mut buf);
        } else {
            let line = format!("line of file {i}: the quick brown fox jumps over the lazy dog\n");
            for (j, b) in buf.iter_mut().enumerate() {
                *b = line.as_bytes()[j % line.len()];
            }
        }
        std::fs::write(sub.join(format!("file{i:04}.dat")), &buf).unwrap();
    }
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

fn publish(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    large_module(&src);

    // One publish to report the catalog's size.
    let root = tmp.path().join("size/catalog");
    let catalog = Catalog::open(&root).unwrap();
    let p = catalog.publish(&src).unwrap();
    eprintln!(
        "large module: {} files, {:.1} MB on disk; catalog after one publish: {:.1} MB \
         (objects: {:.1} MB)",
        p.files,
        dir_size(&src) as f64 / 1e6,
        dir_size(&root) as f64 / 1e6,
        dir_size(&root.join("objects")) as f64 / 1e6,
    );

    let mut group = c.benchmark_group("publish");
    group.sample_size(10);
    let mut n = 0;
    group.bench_function("1000 files, 50 MB, new catalog", |b| {
        b.iter_batched(
            || {
                n += 1;
                Catalog::open(&tmp.path().join(format!("runs/{n}/catalog"))).unwrap()
            },
            |catalog| black_box(catalog.publish(&src).unwrap()),
            BatchSize::PerIteration,
        );
    });
    group.bench_function("1000 files, 50 MB, unchanged (no-op)", |b| {
        b.iter(|| black_box(catalog.publish(&src).unwrap()));
    });
    group.finish();
    // Keep the disk free for the next benchmark.
    let _ = std::fs::remove_dir_all(tmp.path().join("runs"));
}

/// 100 modules, each in three versions; module i depends on up to three modules with a
/// higher index, so the root's closure is all 100.
fn resolve(c: &mut Criterion) {
    const MODULES: usize = 100;
    let tmp = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(&tmp.path().join("catalog")).unwrap();
    for i in 0..MODULES {
        let deps: Vec<(String, &str)> = [i + 1, i * 2 + 1, i * 3 + 2]
            .into_iter()
            .filter(|&j| j < MODULES && j > i)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|j| (format!("bench/m{j:03}"), "^1"))
            .collect();
        for version in ["1.0.0", "1.1.0", "2.0.0"] {
            let dir = tmp.path().join(format!("src/m{i:03}-{version}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("dtk.module.yaml"),
                manifest(&format!("bench/m{i:03}"), version, &deps),
            )
            .unwrap();
            catalog.publish(&dir).unwrap();
        }
    }
    let root = "bench/m000".parse().unwrap();
    let req = "^1".parse().unwrap();
    let r = catalog.resolve(&root, &req).unwrap();
    assert_eq!(r.modules.len(), MODULES);
    eprintln!(
        "resolve: closure of {} modules, {} published versions",
        r.modules.len(),
        MODULES * 3
    );

    let mut group = c.benchmark_group("resolve");
    group.sample_size(20);
    group.bench_function("closure of 100 modules", |b| {
        b.iter(|| black_box(catalog.resolve(&root, &req).unwrap()));
    });
    group.bench_function("list 100 modules x 3 versions", |b| {
        b.iter(|| black_box(catalog.list().unwrap()));
    });
    group.finish();
}

criterion_group!(benches, publish, resolve);
criterion_main!(benches);

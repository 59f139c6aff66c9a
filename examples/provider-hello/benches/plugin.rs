//! What running a provider as a plugin costs: the `hello` provider in-process against the
//! same provider as the plugin executable `dtk-provider-hello` (JSON lines over a pipe).
//!
//! - `call`: one `read` at a time, straight to the provider (the per-call overhead);
//! - `converge`: a converge of a service of `N` hello components with nothing to do (its
//!   refresh reads every component), through `dtk-instance` as the `dtk` binary runs it.
//!
//! Run with `cargo bench -p provider-hello`; `N` defaults to 200. The first converge of
//! each (creating the `N` files) is timed once and printed to stderr.

#![allow(missing_docs, clippy::unwrap_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use dtk_instance::converge::RunOptions;
use dtk_instance::home::Home;
use dtk_instance::stage::StageRequest;
use dtk_model::provider::{Cancel, ResourceRequest, Secrets};
use dtk_model::{Attributes, Provider, Value};
use provider_hello::HelloProvider;

fn n() -> usize {
    std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// A module of `n` greetings, each its own file in `out`.
fn module(dir: &Path, out: &Path, n: usize) {
    let mut text = String::from(
        "dsl_version: 1.0.0\nmodule: bench/hi\nversion: 1.0.0\ncomponent_defs:\n  g:\n    \
         attributes:\n      directory: {type: string, required: true}\n      \
         file_name: {type: string, required: true}\n      name: {type: string, default: world}\n      \
         path: {type: string, dynamic: true}\n      greeting: {type: string, dynamic: true}\n    \
         actions:\n      create:\n        provider: hello.file\n      delete:\n        \
         provider: hello.file\nassemblies:\n  many:\n    components:\n",
    );
    for i in 0..n {
        text.push_str(&format!(
            "    - g[g{i}]: {{attributes: {{directory: '{}', file_name: f{i}.txt}}}}\n",
            out.display()
        ));
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("dtk.module.yaml"), text).unwrap();
}

/// The plugin executable in a directory of its own, as a user installs it.
fn plugins_dir(root: &Path) -> PathBuf {
    let dir = root.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_dtk-provider-hello"),
        dir.join("dtk-provider-hello"),
    )
    .unwrap();
    dir
}

fn in_process(root: &Path) -> Home {
    let mut home = Home::open(root).unwrap();
    home.register_provider(Arc::new(HelloProvider::new()))
        .unwrap();
    home
}

fn as_plugin(root: &Path) -> Home {
    let dirs = [plugins_dir(root)];
    let registry = dtk_instance::providers::standard_with_plugins(root, &dirs);
    Home::with_providers(root, registry).unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let n = n();

    // One `read`, straight to the provider.
    let out = tmp.path().join("call");
    std::fs::create_dir_all(&out).unwrap();
    let mut inputs = Attributes::new();
    inputs.insert("directory".into(), Value::Str(out.display().to_string()));
    let secrets = Secrets::default();
    let cancel = Cancel::new();
    let req = ResourceRequest {
        service: "s",
        component: "g",
        node: None,
        resource: "file",
        idempotency_key: "k",
        inputs: &inputs,
        secrets: &secrets,
        prior: None,
        service_nodes: &[],
        cancel: &cancel,
    };
    let local: Arc<dyn Provider> = Arc::new(HelloProvider::new());
    let root = tmp.path().join("call-home");
    let registry = dtk_instance::providers::standard_with_plugins(&root, &[plugins_dir(&root)]);
    let plugin = registry.get("hello").unwrap();
    rt.block_on(local.create(&req)).unwrap();
    rt.block_on(plugin.read(&req)).unwrap();
    let mut g = c.benchmark_group("call");
    g.bench_function("read/in-process", |b| {
        b.iter(|| rt.block_on(local.read(&req)).unwrap());
    });
    g.bench_function("read/plugin", |b| {
        b.iter(|| rt.block_on(plugin.read(&req)).unwrap());
    });
    g.finish();

    // A converge of N components with nothing to do.
    let mut g = c.benchmark_group("converge");
    g.sample_size(10);
    for (label, make) in [
        ("in-process", in_process as fn(&Path) -> Home),
        ("plugin", as_plugin),
    ] {
        let root = tmp.path().join(label);
        let home = make(&root);
        let src = tmp.path().join(format!("{label}-module"));
        module(&src, &tmp.path().join(format!("{label}-out")), n);
        home.catalog().publish(&src).unwrap();
        home.stage(&StageRequest {
            module: "bench/hi".parse().unwrap(),
            version: None,
            assembly: "many".to_owned(),
            name: "hi".to_owned(),
            target: None,
            base: false,
        })
        .unwrap();
        let svc = home.service("hi").unwrap();
        let start = Instant::now();
        let first = rt.block_on(svc.converge(&RunOptions::default())).unwrap();
        assert!(first.is_success(), "{}", first.tree);
        assert_eq!(first.tasks.len(), n);
        eprintln!(
            "converge of {n} hello components, {label}: first (creating) {:?}",
            start.elapsed()
        );
        g.bench_function(format!("{n}-unchanged/{label}"), |b| {
            b.iter(|| {
                let r = rt.block_on(svc.converge(&RunOptions::default())).unwrap();
                assert!(r.tasks.is_empty());
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

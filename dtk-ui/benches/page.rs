//! The service page of a 1,000-component service, converged once: everything
//! `GET /services/NAME` does (status, history, the last run's timeline and critical path,
//! the DAG laid out and drawn, the HTML), and the layout alone. Goal: the page in under a
//! second.
//!
//! `cargo bench -p dtk-ui` (set `DTK_UI_BENCH_COMPONENTS` for another size).

#![allow(missing_docs, clippy::unwrap_used, clippy::print_stderr)]

use std::fmt::Write as _;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use dtk_instance::converge::RunOptions;
use dtk_instance::home::Home;
use dtk_instance::stage::StageRequest;

/// A module whose assembly has `n` components: nodes of ten (the node and nine steps, each
/// step linked to the one before it on its node, so the DAG has chains to lay out).
fn module(n: usize) -> String {
    let mut m = String::from(
        "dsl_version: 1.0.0\nmodule: bench/ui\nversion: 1.0.0\ncomponent_defs:\n  step:\n    \
         attributes:\n      k: {type: integer, required: true}\n      out: {type: string, dynamic: true}\n    \
         actions:\n      create:\n        commands:\n        - RUN echo out=k{{k}} >> \"$DTK_OUTPUT\"\n\
         assemblies:\n  big:\n    components:\n",
    );
    let nodes = n.div_ceil(10);
    let mut left = n;
    for node in 1..=nodes {
        let _ = write!(
            m,
            "    - node[n{node}]:\n        attributes: {{image: ubuntu_jammy, size: small}}\n        components:\n"
        );
        left = left.saturating_sub(1);
        for k in 1..=9 {
            if left == 0 {
                break;
            }
            left -= 1;
            if k == 1 {
                let _ = writeln!(m, "        - step[s{k}]: {{attributes: {{k: {k}}}}}");
            } else {
                let _ = writeln!(
                    m,
                    "        - step[s{k}]: {{attributes: {{k: {k}}}, links: [\"step[s{}]\"]}}",
                    k - 1
                );
            }
        }
    }
    m
}

fn bench(c: &mut Criterion) {
    let n: usize = std::env::var("DTK_UI_BENCH_COMPONENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("dtk.module.yaml"), module(n)).unwrap();
    let home = Home::open(&tmp.path().join("home")).unwrap();
    let published = home.catalog().publish(&src).unwrap();
    home.stage(&StageRequest {
        module: published.module,
        version: None,
        assembly: "big".to_owned(),
        name: "big".to_owned(),
        target: None,
        base: false,
    })
    .unwrap();
    let svc = home.service("big").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = rt.block_on(svc.converge(&RunOptions::default())).unwrap();
    assert!(report.is_success(), "{}", report.tree);
    assert_eq!(svc.status().unwrap().components.len(), n);
    let page = dtk_ui::render_service_page(&home, "big", None).unwrap();
    eprintln!(
        "the page of {n} components, {} tasks in the last run: {} KB of HTML",
        report.tasks.len(),
        page.len() / 1024
    );

    let mut g = c.benchmark_group("ui");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function(format!("service page, {n} components"), |b| {
        b.iter(|| dtk_ui::render_service_page(&home, "big", None).unwrap());
    });
    let (nodes, edges) = dtk_ui::view::graph(&svc).unwrap();
    g.bench_function(format!("DAG layout and SVG, {} tasks", nodes.len()), |b| {
        b.iter(|| {
            let mut out = String::new();
            dtk_ui::graph::svg(&mut out, "big", &nodes, &edges, false);
            out
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

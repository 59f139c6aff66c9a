//! Criterion benchmarks of the planner and the executor, per component and per task,
//! with the allocator the `dtk` binary uses (mimalloc):
//!
//! ```text
//! cargo bench -p dtk-workflow --bench criterion
//! cargo bench -p dtk-workflow --bench criterion -- execute   # one group
//! ```
//!
//! `plan/N`: `plan()` of a service of N components (one node per 10, each component
//! linked to an earlier one), nothing applied yet: every component planned. `execute/SHAPE`:
//! `execute()` of 100,000 tasks of a no-op provider (what the executor itself costs per
//! task), wide (no edges), a chain, and the service shape. Criterion reports the time per
//! element: per component planned, per task run. `cargo bench --bench workflow` has the
//! peak-memory figures and the journal's cost.
#![allow(missing_docs)]

mod common;

use common::{Shape, ctx, model, runtime};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use dtk_workflow::{ActualState, PlanRequest, execute, plan};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn planner(c: &mut Criterion) {
    let mut g = c.benchmark_group("plan");
    g.sample_size(10);
    for n in [1_000usize, 10_000, 100_000] {
        let m = model(n, Shape::Service);
        let state = ActualState::new();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(n.to_string(), |b| {
            b.iter_with_large_drop(|| plan(&m, &state, &PlanRequest::Converge).expect("plan"))
        });
    }
    g.finish();
}

fn executor(c: &mut Criterion) {
    const N: usize = 100_000;
    let rt = runtime();
    let mut g = c.benchmark_group("execute");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    for (name, shape) in [
        ("wide", Shape::Wide),
        ("chain", Shape::Chain),
        ("service", Shape::Service),
    ] {
        let m = model(N, shape);
        let p = plan(&m, &ActualState::new(), &PlanRequest::Converge).expect("plan");
        let cx = ctx();
        let empty = ActualState::new();
        g.bench_function(name, |b| {
            b.iter_batched(
                || (),
                |()| {
                    let o = rt.block_on(execute(&p, &m, &empty, &cx)).expect("execute");
                    assert!(o.is_success());
                    o
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, planner, executor);
criterion_main!(benches);

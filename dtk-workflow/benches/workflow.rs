//! dtk-workflow benchmarks: plan time and peak memory, executor overhead per task, journal
//! cost per task. Run with
//!
//! ```text
//! cargo bench -p dtk-workflow --bench workflow            # everything
//! cargo bench -p dtk-workflow --bench workflow -- quick   # smaller sizes
//! ```
//!
//! Each figure is printed with its baseline and the ratio: the plan against the goal
//! (100,000 components in 2 s and 1 GB), the executor against bare tokio task spawning
//! (the floor), the group-committed journal against an fsync per entry.
#![allow(clippy::print_stdout, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::{Shape, ctx, model, runtime};
use dtk_model::instance::ServiceModel;
use dtk_workflow::{ActualState, Plan, PlanRequest, SyncMode, execute, plan};
use peak_alloc::PeakAlloc;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

fn mb(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Plans once, measuring time and the peak of memory allocated during planning.
fn measure_plan(m: &ServiceModel, s: &ActualState, req: &PlanRequest) -> (Duration, usize, Plan) {
    let before = ALLOC.current_usage();
    ALLOC.reset_peak_usage();
    let t = Instant::now();
    let p = plan(m, s, req).expect("plan");
    let took = t.elapsed();
    let peak = ALLOC.peak_usage().saturating_sub(before);
    (took, peak, p)
}

fn bench_plan(sizes: &[usize], rt: &tokio::runtime::Runtime) {
    println!("## plan (shape: 1 node per 10 components, placement + 1 link each)");
    println!(
        "{:>8} {:>10} {:>10} {:>12} {:>12} {:>10} {:>12}",
        "comps", "model MB", "first s", "first MB", "no-op s", "no-op MB", "vs goal 2s"
    );
    for &n in sizes {
        let base = ALLOC.current_usage();
        let m = model(n, Shape::Service);
        let model_mb = mb(ALLOC.current_usage().saturating_sub(base));
        let (t1, m1, p) = measure_plan(&m, &ActualState::new(), &PlanRequest::Converge);
        assert_eq!(p.len(), n);
        // Converge (no-op provider) to get the state for the "nothing changed" plan.
        let out = rt
            .block_on(execute(&p, &m, &ActualState::new(), &ctx()))
            .expect("execute");
        assert!(out.is_success());
        drop(p);
        let (t2, m2, p2) = measure_plan(&m, &out.state, &PlanRequest::Converge);
        assert!(p2.is_empty());
        println!(
            "{:>8} {:>10.1} {:>10.3} {:>12.1} {:>12.3} {:>10.1} {:>11.1}%",
            n,
            model_mb,
            t1.as_secs_f64(),
            mb(m1),
            t2.as_secs_f64(),
            mb(m2),
            100.0 * t1.as_secs_f64().max(t2.as_secs_f64()) / 2.0
        );
    }
    println!(
        "(first: nothing applied, every component planned; no-op: second converge, nothing planned;"
    );
    println!(
        " MB: peak heap allocated by plan() above what was allocated before; goal 1 GB at 100,000)"
    );
}

fn bench_exec(n: usize, rt: &tokio::runtime::Runtime) {
    println!();
    println!("## executor overhead per task ({n} no-op provider tasks, 2 worker threads)");
    // The floor: spawn and join n no-op tokio tasks, 16 at a time, like the executor.
    let floor = median(
        (0..5)
            .map(|_| {
                rt.block_on(async {
                    let t = Instant::now();
                    let mut set = tokio::task::JoinSet::new();
                    for i in 0..n {
                        if set.len() >= 16 {
                            let _ = set.join_next().await;
                        }
                        set.spawn(async move { i });
                    }
                    while set.join_next().await.is_some() {}
                    t.elapsed()
                })
            })
            .collect(),
    );
    let floor_us = floor.as_secs_f64() * 1e6 / n as f64;
    println!(
        "{:<34} {:>10.2} µs/task",
        "baseline: bare tokio spawn+join", floor_us
    );
    for (name, shape) in [
        ("wide (no edges)", Shape::Wide),
        ("chain", Shape::Chain),
        ("service (nodes + links)", Shape::Service),
    ] {
        let m = model(n, shape);
        let p = plan(&m, &ActualState::new(), &PlanRequest::Converge).expect("plan");
        let times: Vec<Duration> = (0..5)
            .map(|_| {
                let t = Instant::now();
                let o = rt
                    .block_on(execute(&p, &m, &ActualState::new(), &ctx()))
                    .expect("execute");
                assert!(o.is_success());
                t.elapsed()
            })
            .collect();
        let per = median(times).as_secs_f64() * 1e6 / n as f64;
        println!(
            "{:<34} {:>10.2} µs/task  ({:.1}x the floor, {:.4}% of 1 ms)",
            name,
            per,
            per / floor_us,
            per / 10.0
        );
    }
}

fn bench_journal(n: usize, rt: &tokio::runtime::Runtime) {
    println!();
    println!("## journal cost per task ({n} no-op tasks, wide; journal on the target dir's disk)");
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let m = model(n, Shape::Wide);
    let p = plan(&m, &ActualState::new(), &PlanRequest::Converge).expect("plan");
    let mut rows = Vec::new();
    for (name, mode) in [
        ("no journal", None),
        (
            "group commit (fsync per batch)",
            Some(SyncMode::GroupCommit),
        ),
        ("fsync per entry (baseline)", Some(SyncMode::EveryEntry)),
    ] {
        let mut c = ctx();
        if let Some(mode) = mode {
            c.journal = Some(dir.path().join(format!("{name}.jsonl").replace(' ', "_")));
            c.journal_sync = mode;
        }
        let t = Instant::now();
        let o = rt
            .block_on(execute(&p, &m, &ActualState::new(), &c))
            .expect("execute");
        let took = t.elapsed();
        assert!(o.is_success());
        let stats = o.journal.unwrap_or_default();
        rows.push((name, took, stats));
    }
    let base = rows[0].1;
    let group = rows[1].1.saturating_sub(base);
    let every = rows[2].1.saturating_sub(base);
    for (name, took, stats) in &rows {
        println!(
            "{:<34} {:>9.1} µs/task total  entries {:>6}  fsyncs {:>6}",
            name,
            took.as_secs_f64() * 1e6 / n as f64,
            stats.entries,
            stats.syncs
        );
    }
    println!(
        "journal cost: group commit {:.1} µs/task, fsync per entry {:.1} µs/task: {:.1}x cheaper",
        group.as_secs_f64() * 1e6 / n as f64,
        every.as_secs_f64() * 1e6 / n as f64,
        every.as_secs_f64() / group.as_secs_f64().max(1e-9)
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let rt = runtime();
    let sizes: &[usize] = if quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000]
    };
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| ["plan", "exec", "journal"].contains(&a.as_str()))
        .collect();
    let on = |what: &str| only.is_empty() || only.iter().any(|o| o == what);
    // `once SHAPE N`: one execute of N tasks, for a profiler (perf, callgrind).
    if let Some(pos) = std::env::args().position(|a| a == "once") {
        let args: Vec<String> = std::env::args().skip(pos + 1).collect();
        let shape = match args.first().map(String::as_str) {
            Some("chain") => Shape::Chain,
            Some("service") => Shape::Service,
            _ => Shape::Wide,
        };
        let n = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
        let m = model(n, shape);
        let p = plan(&m, &ActualState::new(), &PlanRequest::Converge).expect("plan");
        let t = Instant::now();
        let o = rt
            .block_on(execute(&p, &m, &ActualState::new(), &ctx()))
            .expect("execute");
        assert!(o.is_success());
        println!("{:.2} µs/task", t.elapsed().as_secs_f64() * 1e6 / n as f64);
        return;
    }
    if std::env::args().any(|a| a == "phases") {
        for n in [5_000usize, 10_000, 20_000] {
            let m = model(n, Shape::Service);
            let t = Instant::now();
            let g = dtk_workflow::build_graph(&m, &ActualState::new(), &PlanRequest::Converge)
                .expect("graph");
            let t1 = t.elapsed();
            let t = Instant::now();
            let p = g.into_plan().expect("plan");
            let t2 = t.elapsed();
            let t = Instant::now();
            drop(p);
            println!("{n}: build {t1:?} into_plan {t2:?} drop {:?}", t.elapsed());
        }
        return;
    }
    if on("plan") {
        bench_plan(sizes, &rt);
    }
    if on("exec") {
        bench_exec(if quick { 10_000 } else { 100_000 }, &rt);
    }
    if on("journal") {
        bench_journal(if quick { 500 } else { 2_000 }, &rt);
    }
}

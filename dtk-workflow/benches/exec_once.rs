//! `execute()` of 100,000 no-op provider tasks, five times; prints the median per task.
//! For A/B comparisons of two builds run alternately (copy the binary aside, change the
//! code, build again, run both in turns): on a machine whose speed drifts by tens of
//! percent over minutes, criterion's comparison with a saved baseline does not hold.
//! `SHAPE=wide|chain|service` (default service), as in the criterion bench.
#![allow(missing_docs, clippy::print_stdout)]

mod common;

use common::{Shape, ctx, model, runtime};
use dtk_workflow::{ActualState, PlanRequest, execute, plan};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let shape = match std::env::var("SHAPE").as_deref() {
        Ok("wide") => Shape::Wide,
        Ok("chain") => Shape::Chain,
        _ => Shape::Service,
    };
    let n = 100_000;
    let m = model(n, shape);
    let p = plan(&m, &ActualState::new(), &PlanRequest::Converge).expect("plan");
    let cx = ctx();
    let rt = runtime();
    let empty = ActualState::new();
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let o = rt.block_on(execute(&p, &m, &empty, &cx)).expect("execute");
        times.push(t.elapsed());
        assert!(o.is_success());
        drop(o);
    }
    times.sort();
    println!(
        "median {:?}, {:.2} µs per task",
        times[2],
        times[2].as_secs_f64() * 1e6 / n as f64
    );
}

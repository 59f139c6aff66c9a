//! Property tests on generated DAG shapes (after steno's saga proptests): every task runs
//! at most once per converge, every edge is respected, no two tasks on one node overlap,
//! delete order is the reverse of create order, a failure skips exactly its descendants
//! (any number of failures, with and without `fail_fast`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use dtk_model::instance::ServiceModel;
use dtk_workflow::{ActualState, PlanRequest, TaskStatus, execute, plan};
use proptest::prelude::*;

use crate::support::*;

#[derive(Debug, Clone)]
struct Shape {
    /// Per component: its node (`None`: not on a node) and the earlier components it
    /// depends on.
    comps: Vec<(Option<u8>, Vec<usize>)>,
    concurrency: usize,
    provider_limit: Option<usize>,
    delay_us: u64,
}

fn shape() -> impl Strategy<Value = Shape> {
    (1usize..14)
        .prop_flat_map(|n| {
            let comps = (0..n)
                .map(|i| {
                    (
                        prop::option::of(0u8..3),
                        prop::collection::vec(0..i.max(1), 0..=i.min(3)),
                    )
                        .prop_map(move |(node, deps)| {
                            let deps: BTreeSet<usize> =
                                deps.into_iter().filter(|&d| d < i).collect();
                            (node, deps.into_iter().collect::<Vec<_>>())
                        })
                })
                .collect::<Vec<_>>();
            (comps, 1usize..6, prop::option::of(1usize..3), 0u64..400)
        })
        .prop_map(|(comps, concurrency, provider_limit, delay_us)| Shape {
            comps,
            concurrency,
            provider_limit,
            delay_us,
        })
}

fn id(shape: &Shape, i: usize) -> String {
    match shape.comps[i].0 {
        Some(n) => format!("n{n}/c{i}"),
        None => format!("c{i}"),
    }
}

fn model(shape: &Shape) -> ServiceModel {
    let mut m = M::new("prop");
    for (i, (_, deps)) in shape.comps.iter().enumerate() {
        let mut c = C::res(&id(shape, i));
        for &d in deps {
            c = c.dep(&id(shape, d));
        }
        m = m.cmp(c);
    }
    m.build()
}

fn ctx_for(shape: &Shape, world: &std::sync::Arc<World>) -> dtk_workflow::ExecContext {
    *world.delay.lock().unwrap() = Duration::from_micros(shape.delay_us);
    let mut c = ctx(world);
    c.limits.concurrency = shape.concurrency;
    if let Some(l) = shape.provider_limit {
        c.limits.per_provider.insert("fake".to_owned(), l);
    }
    c
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn converge_and_delete_respect_the_dag(shape in shape()) {
        let m = model(&shape);
        let world = World::new();
        let c = ctx_for(&shape, &world);
        let rt = rt();
        let p = plan(&m, &ActualState::new(), &PlanRequest::Converge).unwrap();
        let o = rt.block_on(execute(&p, &m, &ActualState::new(), &c)).unwrap();
        prop_assert!(o.is_success());
        let calls = world.take_calls();
        // Every task exactly once.
        let mut by: BTreeMap<String, _> = BTreeMap::new();
        for call in &calls {
            prop_assert!(by.insert(call.component.clone(), call.clone()).is_none(), "{} ran twice", call.component);
        }
        prop_assert_eq!(by.len(), shape.comps.len());
        // Every edge respected: a dependency ended before its dependent started.
        for (i, (_, deps)) in shape.comps.iter().enumerate() {
            for &d in deps {
                let (a, b) = (&by[&id(&shape, d)], &by[&id(&shape, i)]);
                prop_assert!(a.end < b.start, "{} -> {}", a.component, b.component);
            }
        }
        // No two tasks on one node at once; at most `provider_limit` fake calls at once.
        check_overlaps(&calls, shape.provider_limit)?;
        // Second converge: nothing.
        prop_assert!(plan(&m, &o.state, &PlanRequest::Converge).unwrap().is_empty());

        // Delete: reverse order.
        let pd = plan(&m, &o.state, &PlanRequest::Delete).unwrap();
        let od = rt.block_on(execute(&pd, &m, &o.state, &c)).unwrap();
        prop_assert!(od.is_success());
        prop_assert!(od.state.components.is_empty());
        let calls = world.take_calls();
        let by: BTreeMap<String, _> = calls.iter().map(|c| (c.component.clone(), c.clone())).collect();
        prop_assert_eq!(calls.len(), shape.comps.len());
        for (i, (_, deps)) in shape.comps.iter().enumerate() {
            for &d in deps {
                let (dep, dependent) = (&by[&id(&shape, d)], &by[&id(&shape, i)]);
                prop_assert!(dependent.end < dep.start, "delete {} before {}", dependent.component, dep.component);
            }
        }
        check_overlaps(&calls, shape.provider_limit)?;
    }

    #[test]
    fn a_failure_skips_exactly_its_descendants(shape in shape(), pick in any::<prop::sample::Index>()) {
        let m = model(&shape);
        let world = World::new();
        let c = ctx_for(&shape, &world);
        let victim = pick.index(shape.comps.len());
        world.fail(&id(&shape, victim), "*", Fail::Always);
        let p = plan(&m, &ActualState::new(), &PlanRequest::Converge).unwrap();
        let o = rt().block_on(execute(&p, &m, &ActualState::new(), &c)).unwrap();
        // Descendants of the victim in the generated DAG.
        let mut below = BTreeSet::new();
        for (i, (_, deps)) in shape.comps.iter().enumerate() {
            if deps.iter().any(|d| *d == victim || below.contains(d)) {
                below.insert(i);
            }
        }
        for (i, _) in shape.comps.iter().enumerate() {
            let st = o.status(&dtk_workflow::TaskId(format!("{}.create", id(&shape, i)))).unwrap();
            match st {
                TaskStatus::Failed { .. } => prop_assert_eq!(i, victim),
                TaskStatus::Skipped { .. } => prop_assert!(below.contains(&i)),
                TaskStatus::Done => prop_assert!(i != victim && !below.contains(&i)),
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Failure isolation, with any number of failures: every task not downstream of a
    /// failure runs (done); every task downstream of one is skipped, naming a failed task
    /// it depends on; none downstream runs. With `fail_fast`, nothing runs once a failure
    /// is known, and every task that did not run names the first failure.
    #[test]
    fn failures_skip_only_what_depends_on_them(
        shape in shape(),
        picks in prop::collection::vec(any::<prop::sample::Index>(), 1..4),
        fail_fast in any::<bool>(),
    ) {
        let m = model(&shape);
        let world = World::new();
        let mut c = ctx_for(&shape, &world);
        c.fail_fast = fail_fast;
        let victims: BTreeSet<usize> = picks.iter().map(|p| p.index(shape.comps.len())).collect();
        for &v in &victims {
            world.fail(&id(&shape, v), "*", Fail::Always);
        }
        let p = plan(&m, &ActualState::new(), &PlanRequest::Converge).unwrap();
        let o = rt().block_on(execute(&p, &m, &ActualState::new(), &c)).unwrap();
        prop_assert!(!o.is_success());
        prop_assert!(!o.cancelled);
        // Ancestors of each component in the generated DAG.
        let mut ancestors: Vec<BTreeSet<usize>> = Vec::new();
        for (i, (_, deps)) in shape.comps.iter().enumerate() {
            let mut a = BTreeSet::new();
            for &d in deps {
                a.insert(d);
                a.extend(ancestors[d].iter().copied());
            }
            prop_assert!(!a.contains(&i));
            ancestors.push(a);
        }
        let task = |i: usize| dtk_workflow::TaskId(format!("{}.create", id(&shape, i)));
        let status = |i: usize| o.status(&task(i)).cloned().unwrap();
        let failed: BTreeSet<usize> = (0..shape.comps.len())
            .filter(|&i| matches!(status(i), TaskStatus::Failed { .. }))
            .collect();
        prop_assert!(!failed.is_empty());
        prop_assert!(failed.is_subset(&victims), "only victims fail: {:?}", failed);
        let ran: BTreeSet<String> = world.calls().into_iter().map(|c| c.component).collect();
        for (i, anc) in ancestors.iter().enumerate() {
            let below_failure = anc.iter().any(|a| failed.contains(a));
            match status(i) {
                TaskStatus::Failed { .. } => {}
                TaskStatus::Done => {
                    prop_assert!(!below_failure, "{} ran below a failure", id(&shape, i));
                }
                TaskStatus::Skipped { because } => {
                    let culprit = (0..shape.comps.len()).find(|&f| task(f) == because);
                    prop_assert!(culprit.is_some_and(|f| failed.contains(&f)));
                    let culprit = culprit.unwrap();
                    prop_assert!(
                        fail_fast || anc.contains(&culprit),
                        "{} skipped because of {}, which it does not depend on",
                        id(&shape, i),
                        because
                    );
                    prop_assert!(!ran.contains(&id(&shape, i)), "a skipped task ran");
                }
                other => prop_assert!(false, "{:?}", other),
            }
            if !fail_fast && !below_failure && !victims.contains(&i) {
                prop_assert_eq!(status(i), TaskStatus::Done, "{} should run", id(&shape, i));
            }
        }
    }
}

fn check_overlaps(calls: &[Call], provider_limit: Option<usize>) -> Result<(), TestCaseError> {
    for a in calls {
        for b in calls {
            if std::ptr::eq(a, b) {
                continue;
            }
            if a.node.is_some() && a.node == b.node {
                prop_assert!(
                    a.end < b.start || b.end < a.start,
                    "{} and {} overlap on {:?}",
                    a.component,
                    b.component,
                    a.node
                );
            }
        }
        if let Some(limit) = provider_limit {
            let at_once = calls
                .iter()
                .filter(|b| b.start <= a.start && a.start <= b.end)
                .count();
            prop_assert!(
                at_once <= limit,
                "{} fake calls at once (limit {})",
                at_once,
                limit
            );
        }
    }
    Ok(())
}

//! The full task graph before the cycle check ([`PlanGraph`]), and how it becomes a
//! [`Plan`]: cycles found and explained, unplanned tasks dropped with the order through
//! them kept.

use std::collections::{HashMap, HashSet};

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use super::{CycleEdge, Plan, PlanError};
use crate::task::{Edge, PlanKind, Task};

/// Every task that could run and every ordering edge, before the cycle check. Made by
/// [`build_graph`]; rendered by [`render_dot`](crate::render_dot) even when it has cycles; turned into a
/// [`Plan`] by [`PlanGraph::into_plan`].
#[derive(Debug, Clone)]
pub struct PlanGraph {
    pub(crate) service: String,
    pub(crate) kind: PlanKind,
    pub(crate) graph: DiGraph<Task, Edge>,
    pub(crate) planned: Vec<bool>,
}

impl PlanGraph {
    /// The service.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// All tasks and edges, planned or not.
    pub fn graph(&self) -> &DiGraph<Task, Edge> {
        &self.graph
    }

    /// Whether the task at `index` is planned (not yet known to be up to date).
    pub fn is_planned(&self, index: NodeIndex) -> bool {
        self.planned.get(index.index()).copied().unwrap_or(false)
    }

    /// The edges that lie on a cycle (within a strongly connected part).
    pub fn cycle_edges(&self) -> HashSet<(NodeIndex, NodeIndex)> {
        let mut out = HashSet::new();
        let sccs = petgraph::algo::tarjan_scc(&self.graph);
        let mut part = vec![usize::MAX; self.graph.node_count()];
        for (i, scc) in sccs.iter().enumerate() {
            for n in scc {
                part[n.index()] = i;
            }
        }
        for e in self.graph.edge_references() {
            let (a, b) = (e.source(), e.target());
            let cyclic = if a == b {
                true
            } else {
                part[a.index()] == part[b.index()] && sccs[part[a.index()]].len() > 1
            };
            if cyclic {
                out.insert((a, b));
            }
        }
        out
    }

    /// Checks for cycles and keeps the planned tasks, ordered as the whole graph orders
    /// them (an order through unplanned tasks is kept as a direct edge).
    pub fn into_plan(self) -> Result<Plan, PlanError> {
        let order = match stable_toposort(&self.graph) {
            Some(order) => order,
            None => {
                return Err(PlanError::Cycle {
                    cycles: find_cycles(&self.graph),
                    service: self.service,
                });
            }
        };
        let n = self.graph.node_count();
        let mut new_index: Vec<Option<u32>> = vec![None; n];
        // For each unplanned task, the planned tasks it transitively comes after.
        let mut reach: Vec<Vec<(u32, String)>> = vec![Vec::new(); n];
        let mut keep: Vec<NodeIndex> = Vec::new();
        // New edges: (from, to, the original edge or a `via` label).
        let mut new_edges: Vec<(u32, u32, Result<usize, String>)> = Vec::new();
        let mut seen: HashSet<u32> = HashSet::new();
        let (old, planned) = (&self.graph, &self.planned);
        for &v in &order {
            let i = v.index();
            if planned[i] {
                let nv = keep.len() as u32;
                new_index[i] = Some(nv);
                keep.push(v);
                seen.clear();
                for e in old.edges_directed(v, Direction::Incoming) {
                    let p = e.source();
                    if let Some(np) = new_index[p.index()] {
                        if seen.insert(np) {
                            new_edges.push((np, nv, Ok(e.id().index())));
                        }
                    } else {
                        for (np, via) in &reach[p.index()] {
                            if seen.insert(*np) {
                                new_edges.push((*np, nv, Err(via.clone())));
                            }
                        }
                    }
                }
            } else {
                let mut acc: Vec<(u32, String)> = Vec::new();
                for e in old.edges_directed(v, Direction::Incoming) {
                    let p = e.source();
                    if let Some(np) = new_index[p.index()] {
                        if !acc.iter().any(|(x, _)| *x == np) {
                            acc.push((np, old[v].label().to_owned()));
                        }
                    } else {
                        for item in &reach[p.index()] {
                            if !acc.iter().any(|(x, _)| *x == item.0) {
                                acc.push(item.clone());
                            }
                        }
                    }
                }
                reach[i] = acc;
            }
        }
        drop(reach);
        // Move the kept tasks and edges out of the full graph (no copies).
        let (nodes, edges) = self.graph.into_nodes_edges();
        let mut tasks: Vec<Option<Task>> = nodes.into_iter().map(|n| Some(n.weight)).collect();
        let mut weights: Vec<Option<Edge>> = edges.into_iter().map(|e| Some(e.weight)).collect();
        let mut graph: DiGraph<Task, Edge> = DiGraph::with_capacity(keep.len(), new_edges.len());
        let mut topo = Vec::with_capacity(keep.len());
        for v in keep {
            if let Some(t) = tasks[v.index()].take() {
                topo.push(graph.add_node(t));
            }
        }
        drop(tasks);
        for (a, b, w) in new_edges {
            let w = match w {
                Ok(e) => weights[e].take().unwrap_or(Edge::Via(String::new())),
                Err(via) => Edge::Via(via),
            };
            graph.add_edge(NodeIndex::new(a as usize), NodeIndex::new(b as usize), w);
        }
        let by_id = graph
            .node_indices()
            .map(|i| (graph[i].id.clone(), i))
            .collect();
        Ok(Plan {
            service: self.service,
            kind: self.kind,
            graph,
            order: topo,
            by_id,
        })
    }
}

/// A topological order that, among tasks free to go, takes the one built first
/// (declaration order): plans and their renderings are deterministic. `None` if the graph
/// has a cycle.
fn stable_toposort(graph: &DiGraph<Task, Edge>) -> Option<Vec<NodeIndex>> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let n = graph.node_count();
    let mut indeg: Vec<usize> = graph
        .node_indices()
        .map(|i| graph.neighbors_directed(i, Direction::Incoming).count())
        .collect();
    let mut heap: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| indeg[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = heap.pop() {
        let v = NodeIndex::new(i);
        order.push(v);
        for s in graph.neighbors_directed(v, Direction::Outgoing) {
            let d = &mut indeg[s.index()];
            *d -= 1;
            if *d == 0 {
                heap.push(Reverse(s.index()));
            }
        }
    }
    (order.len() == n).then_some(order)
}

fn find_cycles(graph: &DiGraph<Task, Edge>) -> Vec<Vec<CycleEdge>> {
    let mut sccs = petgraph::algo::tarjan_scc(graph);
    for scc in &mut sccs {
        scc.sort();
    }
    sccs.sort();
    let mut cycles = Vec::new();
    for scc in sccs {
        let members: HashSet<NodeIndex> = scc.iter().copied().collect();
        let Some(&start) = scc.first() else { continue };
        let self_loop = graph.edges_connecting(start, start).next();
        if scc.len() == 1 {
            if let Some(e) = self_loop {
                let t = graph[start].label().to_owned();
                cycles.push(vec![CycleEdge {
                    from: t.clone(),
                    to: t,
                    reason: e.weight().to_string(),
                }]);
            }
            continue;
        }
        // Breadth-first from `start` inside the part, back to `start`: a shortest cycle
        // through it.
        let mut prev: HashMap<NodeIndex, (NodeIndex, petgraph::graph::EdgeIndex)> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut closing = None;
        'bfs: while let Some(u) = queue.pop_front() {
            let mut out: Vec<_> = graph.edges_directed(u, Direction::Outgoing).collect();
            out.sort_by_key(|e| e.target());
            for e in out {
                let w = e.target();
                if !members.contains(&w) {
                    continue;
                }
                if w == start {
                    closing = Some((u, e.id()));
                    break 'bfs;
                }
                if let std::collections::hash_map::Entry::Vacant(slot) = prev.entry(w) {
                    slot.insert((u, e.id()));
                    queue.push_back(w);
                }
            }
        }
        let Some((last, last_edge)) = closing else {
            continue;
        };
        let mut edges = vec![last_edge];
        let mut cur = last;
        while cur != start {
            let Some(&(p, e)) = prev.get(&cur) else { break };
            edges.push(e);
            cur = p;
        }
        edges.reverse();
        cycles.push(
            edges
                .into_iter()
                .filter_map(|e| {
                    let (a, b) = graph.edge_endpoints(e)?;
                    Some(CycleEdge {
                        from: graph[a].label().to_owned(),
                        to: graph[b].label().to_owned(),
                        reason: graph[e].to_string(),
                    })
                })
                .collect(),
        );
    }
    cycles
}

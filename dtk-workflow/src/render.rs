//! Rendering plans: a text tree like dtk's `task-status`, and Graphviz DOT.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::plan::{Plan, PlanGraph};
use crate::task::{Edge, Task};

#[derive(Default)]
struct TreeNode {
    name: String,
    children: Vec<TreeNode>,
    /// Position of each child by name: a plan of 100,000 tasks over 10,000 nodes puts
    /// 10,000 children under one step.
    by_name: HashMap<String, usize>,
    tasks: Vec<NodeIndex>,
}

impl TreeNode {
    fn insert(&mut self, path: &[String], task: NodeIndex) {
        match path.split_first() {
            None => self.tasks.push(task),
            Some((first, rest)) => {
                let pos = match self.by_name.get(first) {
                    Some(&p) => p,
                    None => {
                        self.children.push(TreeNode {
                            name: first.clone(),
                            ..TreeNode::default()
                        });
                        self.by_name.insert(first.clone(), self.children.len() - 1);
                        self.children.len() - 1
                    }
                };
                self.children[pos].insert(rest, task);
            }
        }
    }
}

/// Longest-path levels (1-based) in topological order: the "stages" of a derived plan.
fn stages(graph: &DiGraph<Task, Edge>, order: &[NodeIndex]) -> Vec<usize> {
    let mut level = vec![1usize; graph.node_count()];
    for &v in order {
        let l = graph
            .neighbors_directed(v, Direction::Incoming)
            .map(|p| level[p.index()] + 1)
            .max()
            .unwrap_or(1);
        level[v.index()] = l;
    }
    level
}

/// Renders `plan` as a tree: workflow steps (or, without a workflow, stages of tasks
/// that may run at once), each task with its action, node and `info(task)`.
pub(crate) fn tree(plan: &Plan, title: &str, info: &dyn Fn(NodeIndex, &Task) -> String) -> String {
    let graph = plan.graph();
    let level = stages(graph, plan.order());
    let mut root = TreeNode::default();
    for &i in plan.order() {
        let t = &graph[i];
        if t.step.is_empty() {
            root.insert(&[format!("stage {}", level[i.index()])], i);
        } else {
            root.insert(&t.step, i);
        }
    }
    // Rows: (tree prefix + label, action, node, info), the middle two borrowed.
    let mut rows: Vec<Row<'_>> = Vec::new();
    fn walk<'g>(
        n: &TreeNode,
        prefix: &str,
        graph: &'g DiGraph<Task, Edge>,
        info: &dyn Fn(NodeIndex, &Task) -> String,
        rows: &mut Vec<Row<'g>>,
    ) {
        let total = n.tasks.len() + n.children.len();
        let mut k = 0;
        for &t in &n.tasks {
            k += 1;
            let last = k == total;
            let task = &graph[t];
            rows.push(Row {
                label: format!(
                    "{prefix}{}{}",
                    if last { "└── " } else { "├── " },
                    task.label()
                ),
                action: &task.action,
                node: task.node.as_deref().unwrap_or("-"),
                info: info(t, task),
            });
        }
        for (ci, c) in n.children.iter().enumerate() {
            k += 1;
            let last = k == total;
            rows.push(Row {
                label: format!(
                    "{prefix}{}{} {}",
                    if last { "└── " } else { "├── " },
                    ci + 1,
                    c.name
                ),
                action: "",
                node: "",
                info: String::new(),
            });
            let p = format!("{prefix}{}", if last { "    " } else { "│   " });
            walk(c, &p, graph, info, rows);
        }
    }
    walk(&root, "", graph, info, &mut rows);
    let width = |col: for<'a> fn(&'a Row<'a>) -> &'a str| {
        rows.iter()
            .map(|r| col(r).chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(|r| &r.label), width(|r| r.action), width(|r| r.node));
    let mut out = String::with_capacity(rows.len() * (w0 + w1 + w2 + 24) + title.len() + 1);
    let _ = writeln!(out, "{title}");
    for r in &rows {
        let start = out.len();
        if r.action.is_empty() && r.info.is_empty() {
            out.push_str(&r.label);
        } else {
            // Padded by characters, as the tree's box-drawing ones are several bytes.
            let _ = write!(
                out,
                "{:<w0$}  {:<w1$}  {:<w2$}  {}",
                r.label, r.action, r.node, r.info
            );
        }
        let kept = out[start..].trim_end().len();
        out.truncate(start + kept);
        out.push('\n');
    }
    out
}

/// One line of a rendered tree.
struct Row<'g> {
    label: String,
    action: &'g str,
    node: &'g str,
    info: String,
}

impl Plan {
    /// The plan as a text tree: workflow steps, or stages of tasks that may run at once,
    /// each task with its action, node and why it is planned.
    pub fn render_tree(&self) -> String {
        let title = format!(
            "{} {}: {} task{}",
            self.kind(),
            self.service(),
            self.len(),
            if self.len() == 1 { "" } else { "s" }
        );
        tree(self, &title, &|_, t| t.reason.to_string())
    }

    /// The plan as Graphviz DOT.
    pub fn render_dot(&self) -> String {
        dot(self.service(), self.graph(), None, &HashSet::new())
    }
}

/// Renders every task and edge of `graph` as Graphviz DOT, even when it has cycles:
/// edges on a cycle are red, tasks that are not planned (up to date) are grey.
pub fn render_dot(graph: &PlanGraph) -> String {
    dot(
        graph.service(),
        graph.graph(),
        Some(&|i: NodeIndex| graph.is_planned(i)),
        &graph.cycle_edges(),
    )
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn dot(
    service: &str,
    graph: &DiGraph<Task, Edge>,
    planned: Option<&dyn Fn(NodeIndex) -> bool>,
    red: &HashSet<(NodeIndex, NodeIndex)>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", escape(service));
    let _ = writeln!(out, "  rankdir=TB;");
    let _ = writeln!(out, "  node [shape=box, fontname=\"monospace\"];");
    for i in graph.node_indices() {
        let t = &graph[i];
        let mut label = format!("{}\n{}", t.label(), t.action);
        if let Some(n) = &t.node {
            let _ = write!(label, " on {n}");
        }
        let _ = write!(label, "\n{}", t.reason);
        let style = match planned {
            Some(p) if !p(i) => ", style=dashed, color=gray, fontcolor=gray",
            _ if t.conditional => ", style=dashed",
            _ => "",
        };
        let _ = writeln!(
            out,
            "  t{} [label=\"{}\"{}];",
            i.index(),
            escape(&label),
            style
        );
    }
    let mut edges: Vec<_> = graph.edge_references().collect();
    edges.sort_by_key(|e| (e.source(), e.target()));
    for e in edges {
        let on_cycle = red.contains(&(e.source(), e.target()));
        let _ = writeln!(
            out,
            "  t{} -> t{} [label=\"{}\"{}];",
            e.source().index(),
            e.target().index(),
            escape(&e.weight().to_string()),
            if on_cycle {
                ", color=red, fontcolor=red, penwidth=2"
            } else {
                ""
            }
        );
    }
    out.push_str("}\n");
    out
}

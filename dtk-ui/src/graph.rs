//! A plan's DAG as SVG, laid out by [`crate::layout`]: what the service page shows and what
//! `dtk service graph --format svg` prints.

use std::fmt::Write as _;

use dtk_workflow::PlanGraph;
use petgraph::visit::EdgeRef;

use crate::html::esc;
use crate::layout::{NodeSize, layout};

/// The width of one character of the monospace labels, in pixels (12px text).
const CHAR_WIDTH: f64 = 7.3;
/// The height of one label line.
const LINE_HEIGHT: f64 = 15.0;

/// A box of the drawing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphNode {
    /// The task id, kept as `data-task` (the live view colours boxes by it).
    pub id: String,
    /// Its label lines (the first in bold).
    pub lines: Vec<String>,
    /// CSS classes: `planned` (would run now), `uptodate`, `conditional`.
    pub class: String,
    /// Its tooltip.
    pub title: String,
    /// Its state in the run in progress (`data-state`), if any.
    pub state: Option<String>,
}

/// An edge of the drawing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphEdge {
    /// The source box (index).
    pub from: usize,
    /// The target box (index).
    pub to: usize,
    /// Why it exists (its tooltip).
    pub label: String,
    /// Whether it lies on a cycle.
    pub cycle: bool,
}

/// The boxes and edges of `graph`: every task (planned or not) and every ordering edge,
/// cycles included.
pub fn plan_graph(graph: &PlanGraph) -> (Vec<GraphNode>, Vec<GraphEdge>) {
    let g = graph.graph();
    let cyclic = graph.cycle_edges();
    let nodes = g
        .node_indices()
        .map(|i| {
            let t = &g[i];
            let mut second = t.action.clone();
            if let Some(n) = &t.node {
                let _ = write!(second, " on {n}");
            }
            let planned = graph.is_planned(i);
            let mut class = if planned { "planned" } else { "uptodate" }.to_owned();
            if t.conditional {
                class.push_str(" conditional");
            }
            GraphNode {
                id: t.id.as_str().to_owned(),
                lines: vec![t.label().to_owned(), second],
                class,
                title: format!(
                    "{}: {}",
                    t.id,
                    if planned {
                        t.reason.to_string()
                    } else {
                        "up to date".to_owned()
                    }
                ),
                state: None,
            }
        })
        .collect();
    let mut edges: Vec<GraphEdge> = g
        .edge_references()
        .map(|e| GraphEdge {
            from: e.source().index(),
            to: e.target().index(),
            label: e.weight().to_string(),
            cycle: cyclic.contains(&(e.source(), e.target())),
        })
        .collect();
    edges.sort_by_key(|e| (e.from, e.to));
    (nodes, edges)
}

/// `graph` as a standalone SVG document (with its own style): `dtk service graph
/// --format svg`.
pub fn plan_graph_svg(graph: &PlanGraph) -> String {
    let (nodes, edges) = plan_graph(graph);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    svg(&mut out, graph.service(), &nodes, &edges, true);
    out
}

/// The style of a standalone drawing (the page has the same rules in its stylesheet).
const STANDALONE_STYLE: &str = "\
.dtk-graph{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#fff}\
.dtk-graph .node rect{fill:#eef4ff;stroke:#3b6fd8;stroke-width:1.2}\
.dtk-graph .node.uptodate rect{fill:#f4f4f4;stroke:#aaa}\
.dtk-graph .node.conditional rect{stroke-dasharray:4 3}\
.dtk-graph .node text{fill:#222}.dtk-graph .node.uptodate text{fill:#777}\
.dtk-graph .node text .head{font-weight:bold}\
.dtk-graph .edge{fill:none;stroke:#667;stroke-width:1.2}\
.dtk-graph .edge.cycle{stroke:#d22;stroke-width:2}\
.dtk-graph .edge.back{stroke-dasharray:6 4}\
.dtk-graph marker path{fill:#667}.dtk-graph marker.cycle path{fill:#d22}";

/// Writes the drawing of `nodes` and `edges` as an `<svg>` element; `standalone` adds the
/// XML namespace's style block (a page brings its own stylesheet: its content security
/// policy allows no inline style).
pub fn svg(
    out: &mut String,
    title: &str,
    nodes: &[GraphNode],
    edges: &[GraphEdge],
    standalone: bool,
) {
    let sizes: Vec<NodeSize> = nodes
        .iter()
        .map(|n| {
            let chars = n.lines.iter().map(|l| l.chars().count()).max().unwrap_or(1);
            NodeSize {
                width: (chars as f64) * CHAR_WIDTH + 18.0,
                height: (n.lines.len() as f64) * LINE_HEIGHT + 10.0,
            }
        })
        .collect();
    let pairs: Vec<(usize, usize)> = edges.iter().map(|e| (e.from, e.to)).collect();
    let l = layout(&sizes, &pairs);
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"dtk-graph\" width=\"{w:.0}\" \
         height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" role=\"img\" aria-label=\"{t}\">",
        w = l.width,
        h = l.height,
        t = esc(&format!("the tasks of {title}")),
    );
    if standalone {
        let _ = write!(out, "<style>{STANDALONE_STYLE}</style>");
    }
    let _ = write!(out, "<title>{}</title>", esc(title));
    out.push_str(
        "<defs>\
         <marker id=\"dtk-arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" \
         markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0L10,5L0,10z\"/></marker>\
         <marker id=\"dtk-arrow-cycle\" class=\"cycle\" viewBox=\"0 0 10 10\" refX=\"9\" \
         refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\">\
         <path d=\"M0,0L10,5L0,10z\"/></marker></defs>",
    );
    out.push_str("<g class=\"edges\">");
    for (e, r) in edges.iter().zip(&l.edges) {
        let mut class = String::from("edge");
        if r.back {
            class.push_str(" back");
        }
        if e.cycle {
            class.push_str(" cycle");
        }
        let _ = write!(
            out,
            "<path class=\"{class}\" data-from=\"{}\" data-to=\"{}\" d=\"{}\" \
             marker-end=\"url(#{})\"><title>{} \u{2192} {}: {}</title></path>",
            esc(&nodes[e.from].id),
            esc(&nodes[e.to].id),
            path_data(&r.points, r.self_loop),
            if e.cycle {
                "dtk-arrow-cycle"
            } else {
                "dtk-arrow"
            },
            esc(&nodes[e.from].id),
            esc(&nodes[e.to].id),
            esc(&e.label),
        );
    }
    out.push_str("</g><g class=\"nodes\">");
    for (n, p) in nodes.iter().zip(&l.nodes) {
        let _ = write!(
            out,
            "<g class=\"node {}\" data-task=\"{}\"{}><title>{}</title>\
             <rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"4\"/><text>",
            esc(&n.class),
            esc(&n.id),
            n.state
                .as_ref()
                .map(|s| format!(" data-state=\"{}\"", esc(s)))
                .unwrap_or_default(),
            esc(&n.title),
            p.x,
            p.y,
            p.width,
            p.height
        );
        for (i, line) in n.lines.iter().enumerate() {
            let _ = write!(
                out,
                "<tspan{} x=\"{:.1}\" y=\"{:.1}\">{}</tspan>",
                if i == 0 { " class=\"head\"" } else { "" },
                p.x + 9.0,
                p.y + 5.0 + LINE_HEIGHT * (i as f64 + 0.8),
                esc(line)
            );
        }
        out.push_str("</text></g>");
    }
    out.push_str("</g></svg>");
}

/// SVG path data through `points`: smooth curves with horizontal tangents (a self-loop is
/// one curve through its four points).
fn path_data(points: &[(f64, f64)], self_loop: bool) -> String {
    let mut d = String::new();
    let Some(&(x0, y0)) = points.first() else {
        return d;
    };
    let _ = write!(d, "M{x0:.1},{y0:.1}");
    if self_loop && points.len() == 4 {
        let _ = write!(
            d,
            " C{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}",
            points[1].0, points[1].1, points[2].0, points[2].1, points[3].0, points[3].1
        );
        return d;
    }
    for w in points.windows(2) {
        let ((ax, ay), (bx, by)) = (w[0], w[1]);
        let dx = (bx - ax) / 2.0;
        let _ = write!(
            d,
            " C{:.1},{ay:.1} {:.1},{by:.1} {bx:.1},{by:.1}",
            ax + dx,
            bx - dx
        );
    }
    d
}

//! The pages, rendered in the server: plain HTML with inline SVG. The one script
//! (`assets/ui.js`) only makes a run in progress live; without it every page still reads
//! whole, and every page is a plain link that can be bookmarked and reloaded.

use std::fmt::Write as _;

use dtk_model::Value;

use crate::graph::{GraphEdge, GraphNode, svg};
use crate::html::{close_page, duration, esc, open_page, url_segment, utc};
use crate::view::{IndexEntry, IndexView, RunView, ServiceView};

/// The index page: services and targets, each a link to its page.
pub fn index(v: &IndexView) -> String {
    let mut out = String::with_capacity(4096);
    open_page(
        &mut out,
        "services",
        &[("services", None)],
        " data-page=\"index\"",
    );
    out.push_str("<h1>Services</h1>");
    entries(&mut out, &v.services, "services", None);
    out.push_str("<h1>Targets</h1>");
    entries(&mut out, &v.targets, "targets", Some(&v.default_target));
    close_page(&mut out);
    out
}

fn entries(out: &mut String, list: &[IndexEntry], what: &str, default: Option<&str>) {
    if list.is_empty() {
        let _ = write!(out, "<p class=\"empty\">No {what} yet.</p>");
        return;
    }
    let _ = write!(
        out,
        "<table class=\"list\" id=\"{what}\"><thead><tr><th>name</th><th>staged from</th>\
         <th>target</th><th>last converge</th></tr></thead><tbody>"
    );
    for e in list {
        let s = &e.summary;
        let last = if e.running {
            "running"
        } else {
            s.last_converge.as_deref().unwrap_or("never")
        };
        let _ = write!(
            out,
            "<tr data-service=\"{name}\"><td><a href=\"/services/{href}\">{name}</a>{dflt}</td>\
             <td>{from}</td><td>{target}</td><td><span class=\"badge {last}\">{last}</span></td></tr>",
            name = esc(&s.name),
            href = url_segment(&s.name),
            dflt = if default == Some(s.name.as_str()) {
                " <span class=\"tag\">default</span>"
            } else {
                ""
            },
            from = esc(s.staged_from.as_deref().unwrap_or("-")),
            target = esc(s.target.as_deref().unwrap_or("-")),
            last = esc(last),
        );
    }
    out.push_str("</tbody></table>");
}

/// A value as compact text (YAML-like flow for lists and maps).
fn value_text(v: &Value) -> String {
    match v {
        Value::Str(t) => t.clone(),
        other => serde_json::to_string(other).unwrap_or_else(|_| "?".to_owned()),
    }
}

/// One service's page: its state, its run (live or recorded) as a timeline, its DAG and
/// its history. `selected` is the run asked for in the address (`?run=`), if any.
pub fn service(
    v: &ServiceView,
    run: Option<&RunView>,
    graph: &(Vec<GraphNode>, Vec<GraphEdge>),
    selected: Option<&str>,
) -> String {
    let mut out = String::with_capacity(64 * 1024 + v.components.len() * 1024);
    let live_run = v.live.as_ref().map(|l| l.run.as_str()).unwrap_or("");
    let attrs = format!(
        " data-page=\"service\" data-service=\"{}\" data-live-run=\"{}\" data-selected=\"{}\"",
        esc(&v.name),
        esc(live_run),
        esc(selected.unwrap_or(""))
    );
    open_page(
        &mut out,
        &v.name,
        &[("services", Some("/".to_owned())), (&v.name, None)],
        &attrs,
    );
    let _ = write!(out, "<h1>{}</h1>", esc(&v.name));
    summary(&mut out, v);
    live_banner(&mut out, v);
    nodes(&mut out, v);
    components(&mut out, v);
    run_section(&mut out, v, run);
    out.push_str(
        "<section id=\"graph\"><h2>Plan</h2><p class=\"note\">Every task of a converge from \
         scratch and why each waits for another (hover an arrow). \
         <span class=\"key planned\">would run now</span> \
         <span class=\"key uptodate\">up to date</span> \
         <span class=\"key cycle\">on a cycle</span> \
         <span class=\"key back\">back edge</span> \
         \u{2014} <a href=\"/services/",
    );
    let _ = write!(
        out,
        "{}/graph.svg\">SVG</a></p><div class=\"scroll\">",
        url_segment(&v.name)
    );
    svg(&mut out, &v.name, &graph.0, &graph.1, false);
    out.push_str("</div></section>");
    history(&mut out, v, run.map(|r| r.run.as_str()));
    close_page(&mut out);
    out
}

fn summary(out: &mut String, v: &ServiceView) {
    out.push_str("<section id=\"summary\"><dl class=\"facts\">");
    let fact = |out: &mut String, k: &str, val: &str| {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", esc(k), val);
    };
    fact(
        out,
        "kind",
        if v.is_target {
            "target instance"
        } else {
            "service instance"
        },
    );
    fact(
        out,
        "staged from",
        &esc(v.staged_from.as_deref().unwrap_or("-")),
    );
    match &v.target {
        Some(t) => fact(
            out,
            "target",
            &format!("<a href=\"/services/{}\">{}</a>", url_segment(t), esc(t)),
        ),
        None => fact(out, "target", "-"),
    }
    match &v.last_converge {
        Some(c) => fact(
            out,
            "last converge",
            &format!(
                "<span class=\"badge {s}\" id=\"last-converge\">{s}</span> {} ({}), commit <code>{}</code>",
                esc(&utc(i64::try_from(c.started_at).unwrap_or(0))),
                esc(&duration(c.duration_ms)),
                esc(c.commit.get(..10).unwrap_or(&c.commit)),
                s = esc(&c.status),
            ),
        ),
        None => fact(
            out,
            "last converge",
            "<span class=\"badge never\" id=\"last-converge\">never</span>",
        ),
    }
    fact(
        out,
        "uncommitted edits",
        &format!(
            "{} file{}",
            v.uncommitted_edits,
            if v.uncommitted_edits == 1 { "" } else { "s" }
        ),
    );
    if let Some(h) = &v.lock {
        fact(
            out,
            "locked by",
            &esc(&format!(
                "{} (pid {} on {}{})",
                h.operation,
                h.pid,
                h.host,
                if h.alive { "" } else { ", gone" }
            )),
        );
    }
    out.push_str("</dl></section>");
}

fn live_banner(out: &mut String, v: &ServiceView) {
    match &v.live {
        Some(l) => {
            let state = if l.running { "running" } else { "interrupted" };
            let _ = write!(
                out,
                "<section id=\"live\" class=\"banner {state}\" data-run=\"{run}\" data-state=\"{state}\" \
                 data-kind=\"{kind}\"><strong>{kind} {run}</strong> <span class=\"what\">{what}</span> \
                 \u{2014} <span id=\"live-progress\">{f}/{n}</span> tasks finished. \
                 <a href=\"?\" class=\"reload\">reload</a></section>",
                run = esc(&l.run),
                kind = esc(if l.kind.is_empty() { "run" } else { &l.kind }),
                what = if l.running {
                    "is running (live)"
                } else {
                    "was interrupted; the next converge resumes it"
                },
                f = l.finished,
                n = l.tasks,
            );
        }
        None => out.push_str(
            "<section id=\"live\" class=\"banner idle\" data-state=\"idle\">No run in progress. \
             This page follows the next one live.</section>",
        ),
    }
}

fn nodes(out: &mut String, v: &ServiceView) {
    out.push_str("<section id=\"nodes\"><h2>Nodes</h2>");
    if v.nodes.is_empty() {
        out.push_str("<p class=\"empty\">No nodes.</p></section>");
        return;
    }
    out.push_str(
        "<table class=\"list\"><thead><tr><th>node</th><th>group</th><th>attributes</th>\
         <th>components</th></tr></thead><tbody>",
    );
    for n in &v.nodes {
        let attrs: Vec<String> = n
            .attributes
            .iter()
            .map(|(k, val)| format!("{}: {}", esc(k), esc(&value_text(val))))
            .collect();
        let count = v
            .components
            .iter()
            .filter(|c| c.node.as_deref() == Some(n.name.as_str()))
            .count();
        let _ = write!(
            out,
            "<tr data-node=\"{name}\"><td>{name}</td><td>{group}</td><td>{attrs}</td><td>{count}</td></tr>",
            name = esc(&n.name),
            group = esc(n.group.as_deref().unwrap_or("-")),
            attrs = attrs.join("<br>"),
        );
    }
    out.push_str("</tbody></table></section>");
}

fn components(out: &mut String, v: &ServiceView) {
    let _ = write!(
        out,
        "<section id=\"components\"><h2>Components <span class=\"count\">{}</span></h2>",
        v.components.len()
    );
    out.push_str(
        "<table class=\"list\"><thead><tr><th>component</th><th>node</th><th>state</th>\
         <th>outputs</th><th>secrets</th></tr></thead><tbody>",
    );
    for c in &v.components {
        let state = serde_json::to_value(c.state)
            .ok()
            .and_then(|s| s.as_str().map(str::to_owned))
            .unwrap_or_default();
        let outputs: Vec<String> = c
            .outputs
            .iter()
            .map(|(k, val)| format!("{}: {}", esc(k), esc(&value_text(val))))
            .collect();
        let _ = write!(
            out,
            "<tr data-component=\"{id}\" data-state=\"{state}\"><td>{id}</td><td>{node}</td>\
             <td class=\"state\"><span class=\"badge {state}\">{label}</span>{error}</td>\
             <td>{outputs}</td><td>{secrets}</td></tr>",
            id = esc(&c.id),
            node = esc(c.node.as_deref().unwrap_or("-")),
            state = esc(&state),
            label = esc(state_label(&state)),
            error = c
                .error
                .as_ref()
                .map(|e| format!("<div class=\"error\">{}</div>", esc(e)))
                .unwrap_or_default(),
            outputs = outputs.join("<br>"),
            secrets = esc(&c.secrets.join(", ")),
        );
    }
    out.push_str("</tbody></table>");
    if !v.removed.is_empty() {
        let _ = write!(
            out,
            "<p class=\"note\">Deployed but gone from the desired state (the next converge \
             deletes them): {}</p>",
            esc(&v.removed.join(", "))
        );
    }
    out.push_str("</section>");
}

/// How a component state reads on the page.
fn state_label(state: &str) -> &str {
    match state {
        "converged" => "up to date",
        "pending" => "not applied",
        other => other,
    }
}

fn run_section(out: &mut String, v: &ServiceView, run: Option<&RunView>) {
    out.push_str("<section id=\"run\">");
    let Some(r) = run else {
        out.push_str("<h2>Run</h2><p class=\"empty\">No run yet.</p></section>");
        return;
    };
    let _ = write!(
        out,
        "<h2>{kind} <code>{run}</code> <span class=\"badge {status}\" id=\"run-status\">{status}</span></h2>\
         <p class=\"note\">{started}{took}{commit} {count} task{s}{critical}</p>",
        kind = esc(r.kind.as_str()),
        run = esc(&r.run),
        status = esc(r.status.as_str()),
        started = r
            .started_at_ms
            .map(|ms| format!(
                "Started {}, ",
                esc(&utc(i64::try_from(ms / 1000).unwrap_or(0)))
            ))
            .unwrap_or_default(),
        took = if r.live {
            format!("running for {}.", esc(&duration(r.duration_ms)))
        } else {
            format!("took {}.", esc(&duration(r.duration_ms)))
        },
        commit = r
            .commit
            .as_ref()
            .map(|c| format!(
                " Desired state <code>{}</code>.",
                esc(c.get(..10).unwrap_or(c))
            ))
            .unwrap_or_default(),
        count = r.timeline.tasks.len(),
        s = if r.timeline.tasks.len() == 1 { "" } else { "s" },
        critical = if r.timeline.critical_path.is_empty() {
            String::new()
        } else {
            format!(
                "; the critical path (\u{2605}) is {} task{} long",
                r.timeline.critical_path.len(),
                if r.timeline.critical_path.len() == 1 {
                    ""
                } else {
                    "s"
                }
            )
        },
    );
    if r.timeline.tasks.is_empty() {
        out.push_str(
            "<p class=\"empty\">Nothing to do: every component was up to date.</p></section>",
        );
        return;
    }
    out.push_str("<div class=\"scroll\">");
    r.timeline.svg(out, r.started_at_ms, r.live);
    out.push_str("</div>");
    out.push_str(
        "<table class=\"list\" id=\"tasks\"><thead><tr><th>task</th><th>node</th><th>state</th>\
         <th>start</th><th>end</th><th>duration</th></tr></thead><tbody>",
    );
    for t in &r.timeline.tasks {
        let _ = write!(
            out,
            "<tr data-task=\"{id}\" data-component=\"{cmp}\" data-state=\"{st}\"{crit}>\
             <td>{star}{id}</td><td>{node}</td><td class=\"state\"><span class=\"badge {st}\">{st}</span>{detail}</td>\
             <td class=\"start\">{start}</td><td class=\"end\">{end}</td><td class=\"took\">{took}</td></tr>",
            id = esc(&t.id),
            cmp = esc(&t.component),
            st = esc(&t.status),
            crit = if t.critical {
                " class=\"critical\""
            } else {
                ""
            },
            star = if t.critical { "\u{2605} " } else { "" },
            node = esc(t.node.as_deref().unwrap_or("-")),
            detail = t
                .detail
                .as_ref()
                .map(|d| format!("<div class=\"error\">{}</div>", esc(d)))
                .unwrap_or_default(),
            start = t
                .start_ms
                .map(duration)
                .map(|d| esc(&d))
                .unwrap_or_default(),
            end = t.end_ms.map(duration).map(|d| esc(&d)).unwrap_or_default(),
            took = match (t.start_ms, t.end_ms) {
                (Some(s), Some(e)) => esc(&duration(e.saturating_sub(s))),
                _ => String::new(),
            },
        );
    }
    out.push_str("</tbody></table>");
    if !r.live && v.live.as_ref().is_some_and(|l| l.running) {
        out.push_str("<p class=\"note\"><a href=\"?\">Show the run in progress</a></p>");
    }
    out.push_str("</section>");
}

fn history(out: &mut String, v: &ServiceView, shown: Option<&str>) {
    out.push_str(
        "<section id=\"history\"><h2>History</h2><div class=\"columns\"><div><h3>Runs</h3>",
    );
    if v.runs.is_empty() {
        out.push_str("<p class=\"empty\">No runs recorded.</p>");
    } else {
        out.push_str("<ol class=\"runs\">");
        for r in &v.runs {
            let _ = write!(
                out,
                "<li data-run=\"{run}\"{cur}><a href=\"/services/{svc}?run={qrun}\">{kind} <code>{run}</code></a> \
                 <span class=\"badge {status}\">{status}</span> {time}, {took}, {n} task{s}{failed}</li>",
                run = esc(&r.run),
                cur = if shown == Some(r.run.as_str()) {
                    " class=\"current\""
                } else {
                    ""
                },
                svc = url_segment(&v.name),
                qrun = url_segment(&r.run),
                kind = esc(r.kind.as_str()),
                status = esc(r.status.as_str()),
                time = esc(&utc(i64::try_from(r.started_at).unwrap_or(0))),
                took = esc(&duration(r.duration_ms)),
                n = r.counts.tasks,
                s = if r.counts.tasks == 1 { "" } else { "s" },
                failed = if r.counts.failed > 0 {
                    format!(", {} failed", r.counts.failed)
                } else {
                    String::new()
                },
            );
        }
        out.push_str("</ol>");
    }
    out.push_str("</div><div><h3>Desired state</h3><ol class=\"commits\">");
    for c in &v.commits {
        let _ = write!(
            out,
            "<li><code>{}</code> {} <span class=\"time\">{}</span></li>",
            esc(c.id.get(..10).unwrap_or(&c.id)),
            esc(&c.summary),
            esc(&utc(c.time))
        );
    }
    out.push_str("</ol></div></div></section>");
}

/// A page saying what went wrong.
pub fn error(status: u16, message: &str) -> String {
    let mut out = String::new();
    open_page(
        &mut out,
        "error",
        &[("error", None)],
        " data-page=\"error\"",
    );
    let _ = write!(
        out,
        "<h1>{status}</h1><p class=\"error\" id=\"error\">{}</p><p><a href=\"/\">All services</a></p>",
        esc(message)
    );
    close_page(&mut out);
    out
}

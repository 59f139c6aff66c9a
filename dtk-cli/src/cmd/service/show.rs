//! Showing a service: its status, its attributes, file diffs.

use std::collections::BTreeMap;
use std::io::Write;

use dtk_instance::home::Home;
use dtk_instance::status::ComponentState;
use dtk_model::Value;
use serde::Serialize;

use crate::Ctx;
use crate::output::{table, utc_time};

pub(super) fn status(home: &Home, name: &str, ctx: &Ctx) -> anyhow::Result<()> {
    let doc = home.service(name)?.status()?;
    ctx.out.emit("dtk.service.status/v1", &doc, |w| {
        writeln!(
            w,
            "service {}{}",
            doc.name,
            doc.target
                .as_ref()
                .map(|t| format!(" on target {t}"))
                .unwrap_or_default()
        )?;
        match &doc.last_converge {
            Some(r) => writeln!(
                w,
                "last converge: {} at {}",
                r.status,
                utc_time(i64::try_from(r.started_at).unwrap_or(0))
            )?,
            None => writeln!(w, "last converge: never")?,
        }
        if doc.uncommitted_edits > 0 {
            writeln!(
                w,
                "uncommitted edits: {} file(s) (see `dtk service diff {}`)",
                doc.uncommitted_edits, doc.name
            )?;
        }
        let state = |s: ComponentState| match s {
            ComponentState::Pending => "pending",
            ComponentState::Converged => "converged",
            ComponentState::Changed => "changed (converge applies it)",
            ComponentState::Drifted => "drifted (converge makes it again)",
            ComponentState::Failed => "failed",
        };
        for n in &doc.nodes {
            writeln!(
                w,
                "node {}{}",
                n.name,
                n.group
                    .as_ref()
                    .map(|g| format!(" (group {g})"))
                    .unwrap_or_default()
            )?;
            for c in doc
                .components
                .iter()
                .filter(|c| c.node.as_deref() == Some(n.name.as_str()))
            {
                print_component(w, &c.id, state(c.state), &c.inputs, &c.outputs, &c.secrets)?;
                if let Some(e) = &c.error {
                    writeln!(w, "      error: {e}")?;
                }
            }
        }
        let loose: Vec<&dtk_instance::status::ComponentStatus> =
            doc.components.iter().filter(|c| c.node.is_none()).collect();
        if !loose.is_empty() {
            writeln!(w, "assembly-wide")?;
            for c in loose {
                print_component(w, &c.id, state(c.state), &c.inputs, &c.outputs, &c.secrets)?;
            }
        }
        for r in &doc.removed {
            writeln!(
                w,
                "  {r}: removed from the desired state (converge deletes it)"
            )?;
        }
        Ok(())
    })
}

pub(super) fn print_component(
    w: &mut dyn Write,
    id: &str,
    state: &str,
    inputs: &BTreeMap<String, Value>,
    outputs: &BTreeMap<String, Value>,
    secrets: &[String],
) -> std::io::Result<()> {
    writeln!(w, "  {id}: {state}")?;
    for (k, v) in inputs {
        writeln!(w, "      {k} = {v}")?;
    }
    for (k, v) in outputs {
        writeln!(w, "      {k} => {v}")?;
    }
    for s in secrets {
        writeln!(w, "      {s} (secret)")?;
    }
    Ok(())
}

pub(super) fn attributes(home: &Home, name: &str, all: bool, ctx: &Ctx) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct Doc {
        attributes: Vec<dtk_instance::attributes::AttributeInfo>,
    }
    let doc = Doc {
        attributes: home.service(name)?.attributes(all)?,
    };
    ctx.out.emit("dtk.service.attributes/v1", &doc, |w| {
        let mut rows = vec![vec![
            "PATH".to_owned(),
            "TYPE".to_owned(),
            "VALUE".to_owned(),
            "SOURCE".to_owned(),
        ]];
        for a in &doc.attributes {
            rows.push(vec![
                a.path.clone(),
                a.r#type.clone(),
                a.value
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "-".into()),
                a.source.to_string(),
            ]);
        }
        table(w, &rows)
    })
}

pub(super) fn unified(path: &str, old: Option<&[u8]>, new: Option<&[u8]>) -> String {
    let old = old.map(String::from_utf8_lossy).unwrap_or_default();
    let new = new.map(String::from_utf8_lossy).unwrap_or_default();
    similar::TextDiff::from_lines(old.as_ref(), new.as_ref())
        .unified_diff()
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string()
}

//! Checks across a module's component definitions: attribute mappings into the same
//! module, and dependency cycles.

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::did_you_mean;
use crate::dsl::decode::{Ctx, child, index};
use crate::dsl::scope::{Scope, Target, list};
use crate::module::{ComponentDef, Flow};

/// Checks, for links to components of this module, that the producer's attribute exists.
pub(crate) fn check_mappings(
    ctx: &mut Ctx,
    scope: &Scope<'_>,
    defs: &BTreeMap<String, ComponentDef>,
    key: &str,
) {
    for def in defs.values() {
        for l in &def.link_defs {
            let target = match &l.target.module {
                Some(m) if scope.own.as_deref() == Some(m.as_str()) => {
                    Target::Local(l.target.name.clone())
                }
                None if scope.local.contains(&l.target.name) => {
                    Target::Local(l.target.name.clone())
                }
                _ => Target::External,
            };
            let Target::Local(producer) = target else {
                continue;
            };
            let Some(pdef) = defs.get(&producer) else {
                continue;
            };
            for (i, m) in l.attribute_mappings.iter().enumerate() {
                // The producer's side: what `->` reads, what `<-` sets.
                let (name, shown) = match m.flow {
                    Flow::In => match m.from.first() {
                        Some(f) if f != "node" => (f, format!("${f}")),
                        _ => continue,
                    },
                    Flow::Out => (&m.to, m.to.clone()),
                };
                if pdef.attributes.contains_key(name) {
                    continue;
                }
                let first = name;
                let path = child(
                    &child(
                        &child(&child(key, &def.name), "link_defs"),
                        &l.target.to_string(),
                    ),
                    "attribute_mappings",
                );
                let path = index(&path, i);
                let sigil = if m.flow == Flow::In { "$" } else { "" };
                let help = match did_you_mean(first, pdef.attributes.keys().map(String::as_str)) {
                    Some(s) => format!("did you mean `{sigil}{s}`?"),
                    None if pdef.attributes.is_empty() => {
                        format!("`{producer}` declares no attributes")
                    }
                    None => format!(
                        "its attributes are {}",
                        list(pdef.attributes.keys().map(String::as_str))
                    ),
                };
                ctx.error_help(
                    m.at,
                    &path,
                    format!("`{shown}`: component `{producer}` has no attribute `{first}`"),
                    help,
                );
            }
        }
    }
}

/// Reports cycles among the dependencies of this module's components.
pub(crate) fn check_cycles(
    ctx: &mut Ctx,
    scope: &Scope<'_>,
    defs: &BTreeMap<String, ComponentDef>,
    key: &str,
) {
    // Edges: a dependency with one choice, into this module.
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for def in defs.values() {
        let mut out = Vec::new();
        for d in &def.dependencies {
            if let [r] = d.choices.as_slice() {
                let local = match &r.module {
                    Some(m) => scope.own.as_deref() == Some(m.as_str()),
                    None => scope.local.contains(&r.name),
                };
                if local && defs.contains_key(&r.name) {
                    out.push(r.name.as_str());
                }
            }
        }
        edges.insert(def.name.as_str(), out);
    }
    // Iterative DFS; a back edge closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Color {
        White,
        Grey,
        Black,
    }
    let mut color: BTreeMap<&str, Color> = edges.keys().map(|k| (*k, Color::White)).collect();
    let mut seen_cycles: BTreeSet<Vec<&str>> = BTreeSet::new();
    let starts: Vec<&str> = {
        // Start from components in source order, so the cycle is named from the first.
        let mut v: Vec<&ComponentDef> = defs.values().collect();
        v.sort_by_key(|d| d.at);
        v.into_iter().map(|d| d.name.as_str()).collect()
    };
    for start in starts {
        if color.get(start) != Some(&Color::White) {
            continue;
        }
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        color.insert(start, Color::Grey);
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let succ = edges.get(node).map(Vec::as_slice).unwrap_or_default();
            if *next < succ.len() {
                let s = succ[*next];
                *next += 1;
                match color.get(s).copied().unwrap_or(Color::Black) {
                    Color::White => {
                        color.insert(s, Color::Grey);
                        stack.push((s, 0));
                    }
                    Color::Grey => {
                        let pos = stack.iter().position(|(n, _)| *n == s).unwrap_or(0);
                        let mut cycle: Vec<&str> = stack[pos..].iter().map(|(n, _)| *n).collect();
                        // Name the cycle from the component declared first.
                        let first = cycle
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, n)| defs.get(**n).map(|d| d.at))
                            .map_or(0, |(i, _)| i);
                        cycle.rotate_left(first);
                        let mut canon = cycle.clone();
                        canon.sort_unstable();
                        if seen_cycles.insert(canon) {
                            report_cycle(ctx, defs, &cycle, key);
                        }
                    }
                    Color::Black => {}
                }
            } else {
                color.insert(node, Color::Black);
                stack.pop();
            }
        }
    }
}

fn report_cycle(ctx: &mut Ctx, defs: &BTreeMap<String, ComponentDef>, cycle: &[&str], key: &str) {
    let Some(first) = cycle.first() else { return };
    let mut names: Vec<&str> = cycle.to_vec();
    names.push(first);
    let text = names.join(" -> ");
    let next = cycle.get(1).copied().unwrap_or(first);
    let Some(def) = defs.get(*first) else { return };
    // Point at the dependency that starts the cycle.
    let at = def
        .dependencies
        .iter()
        .find(|d| d.choices.first().is_some_and(|r| r.name == next))
        .map_or(def.at, |d| d.at);
    ctx.error_help(
        at,
        &child(&child(key, first), "dependencies"),
        format!("dependency cycle: {text}"),
        "a component cannot depend, directly or through others, on itself: remove one of these dependencies",
    );
}

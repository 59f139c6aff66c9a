//! A YAML tree that remembers where each node came from.
//!
//! Built from `yaml-rust2`'s event stream so that every node carries its line and column,
//! which serde-based loading loses. Loading is bounded: documents larger than
//! [`MAX_DOCUMENT_BYTES`], nesting deeper than [`MAX_DEPTH`], alias expansion beyond
//! [`MAX_ALIAS_NODES`] and more than [`MAX_NODES`] nodes in all are refused with a located error instead of exhausting memory or stack
//! (the "billion laughs" and deep-nesting YAML bombs).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::diag::{Diagnostics, Location};

/// The largest document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;
/// The deepest nesting of sequences and mappings accepted.
pub const MAX_DEPTH: usize = 64;
/// The most nodes aliases may add to a document (copies of anchored nodes): the
/// "billion laughs" bound.
pub const MAX_ALIAS_NODES: usize = 500_000;
/// The most nodes a document may hold in all. Without aliases, [`MAX_DOCUMENT_BYTES`]
/// already bounds this (every node takes at least two bytes); a service of 100,000
/// components is about 700,000 nodes.
pub const MAX_NODES: usize = 4_000_000;

/// A YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlNode {
    /// What the node holds.
    pub kind: YamlKind,
    /// Where it starts in the source text.
    pub at: Location,
}

/// The content of a [`YamlNode`].
#[derive(Debug, Clone, PartialEq)]
pub enum YamlKind {
    /// A scalar, with its text as written. `plain` is false for quoted and block
    /// scalars, whose text is always a string (`"1"` is a string, `1` an integer).
    Scalar {
        /// The scalar's text.
        text: String,
        /// Whether it was written without quotes (so it may be a number, boolean, null).
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<YamlNode>),
    /// A mapping, in source order.
    Map(Vec<(YamlNode, YamlNode)>),
}

impl YamlNode {
    /// Whether this is a null: a plain `~`, `null`, `Null`, `NULL` or empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, YamlKind::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The scalar text, if this is a scalar.
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            YamlKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The entries, if this is a mapping.
    pub fn as_map(&self) -> Option<&[(YamlNode, YamlNode)]> {
        match &self.kind {
            YamlKind::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The items, if this is a sequence.
    pub fn as_seq(&self) -> Option<&[YamlNode]> {
        match &self.kind {
            YamlKind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// Looks a key up in a mapping (first match).
    pub fn get(&self, key: &str) -> Option<&YamlNode> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.scalar() == Some(key))
            .map(|(_, v)| v)
    }

    /// A short name of the node's kind for messages: `a string`, `a list`, `a mapping`.
    pub fn kind_phrase(&self) -> &'static str {
        match &self.kind {
            YamlKind::Scalar { .. } if self.is_null() => "empty",
            YamlKind::Scalar { .. } => "a scalar",
            YamlKind::Seq(_) => "a list",
            YamlKind::Map(_) => "a mapping",
        }
    }

    fn count(&self) -> usize {
        match &self.kind {
            YamlKind::Scalar { .. } => 1,
            YamlKind::Seq(items) => 1 + items.iter().map(YamlNode::count).sum::<usize>(),
            YamlKind::Map(entries) => {
                1 + entries
                    .iter()
                    .map(|(k, v)| k.count() + v.count())
                    .sum::<usize>()
            }
        }
    }
}

/// Turns the parser's positions into [`Location`]s. The parser counts characters;
/// [`Location::offset`] is a byte offset, so the character index is converted by walking
/// from the last position asked for.
struct Locator<'a> {
    text: &'a str,
    /// Bytes before `text` in the file (a byte order mark).
    base: usize,
    chars: usize,
    bytes: usize,
}

impl<'a> Locator<'a> {
    fn new(text: &'a str, base: usize) -> Self {
        Locator {
            text,
            base,
            chars: 0,
            bytes: 0,
        }
    }

    fn location(&mut self, m: &Marker) -> Location {
        let target = m.index();
        // Walk from the last position, either way: positions come almost in order (a
        // mapping's start is reported after its first key was scanned), so each walk is
        // short and the whole conversion linear in the document.
        if target >= self.chars {
            let rest = self.text.get(self.bytes..).unwrap_or_default();
            for c in rest.chars().take(target - self.chars) {
                self.bytes += c.len_utf8();
                self.chars += 1;
            }
        } else {
            let before = self.text.get(..self.bytes).unwrap_or_default();
            for c in before.chars().rev().take(self.chars - target) {
                self.bytes -= c.len_utf8();
                self.chars -= 1;
            }
        }
        Location {
            line: u32::try_from(m.line()).unwrap_or(u32::MAX),
            col: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
            offset: self.base + self.bytes,
        }
    }
}

enum Frame {
    Seq {
        at: Location,
        anchor: usize,
        items: Vec<YamlNode>,
    },
    Map {
        at: Location,
        anchor: usize,
        entries: Vec<(YamlNode, YamlNode)>,
        key: Option<YamlNode>,
        /// The line of each key, once the mapping has [`SEEN_AFTER`] entries; before that,
        /// duplicates are found by scanning `entries` (most mappings are small, and a map
        /// per mapping with a copy of each key cost more than the scan).
        seen: Option<HashMap<String, u32>>,
    },
}

/// How many entries a mapping may have before its keys are indexed.
const SEEN_AFTER: usize = 16;

/// The line where `name` is first a key of a mapping being built, if it is.
fn earlier_key(
    entries: &[(YamlNode, YamlNode)],
    seen: Option<&HashMap<String, u32>>,
    name: &str,
) -> Option<u32> {
    match seen {
        Some(seen) => seen.get(name).copied(),
        None => entries
            .iter()
            .find(|(k, _)| k.scalar() == Some(name))
            .map(|(k, _)| k.at.line),
    }
}

/// The dotted path of the keys being built (`component_defs.web.attributes.port`), with
/// `[i]` for list items.
fn key_path(stack: &[Frame]) -> String {
    let mut out = String::new();
    for f in stack {
        match f {
            Frame::Map { key: Some(k), .. } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k.scalar().unwrap_or("?"));
            }
            Frame::Map { key: None, .. } => {}
            Frame::Seq { items, .. } => out.push_str(&format!("[{}]", items.len())),
        }
    }
    out
}

/// Loads the single document in `text`. Problems (syntax errors, bombs, duplicate keys,
/// several documents) are recorded in `diags`; `None` means the text cannot be used at all.
/// An empty document loads as a null scalar.
pub fn load(text: &str, diags: &mut Diagnostics) -> Option<YamlNode> {
    load_skipping(text, diags, &[])
}

/// [`load`], leaving out the values at the key paths of `skip` (each a path of mapping keys
/// from the root, `*` matching any key: `["assemblies", "*", "components"]`): their entries
/// are absent from the tree. A skipped value is still read through (a syntax error in it is
/// still an error) but no node of it is made, which is most of the cost of loading. When a
/// skipped value defines an anchor that the rest of the document uses, the document is
/// loaded again whole.
pub fn load_skipping(text: &str, diags: &mut Diagnostics, skip: &[&[&str]]) -> Option<YamlNode> {
    let before = diags.len();
    match load_inner(text, diags, skip) {
        Ok(root) => root,
        Err(SkippedAnchor) => {
            diags.truncate(before);
            load_inner(text, diags, &[]).ok().flatten()
        }
    }
}

/// An alias named an anchor that was defined in a skipped value.
struct SkippedAnchor;

/// Whether the key just read (the innermost mapping's) ends a path of `skip`.
fn skipped(stack: &[Frame], skip: &[&[&str]]) -> bool {
    skip.iter().any(|path| {
        path.len() == stack.len()
            && path.iter().zip(stack).all(|(want, frame)| match frame {
                Frame::Map { key: Some(k), .. } => *want == "*" || k.scalar() == Some(*want),
                _ => false,
            })
    })
}

/// The parser's next event, or `None` with the syntax error recorded where it is.
fn next_event<T: Iterator<Item = char>>(
    parser: &mut Parser<T>,
    locator: &mut Locator<'_>,
    diags: &mut Diagnostics,
) -> Option<(Event, Marker)> {
    match parser.next_token() {
        Ok(e) => Some(e),
        Err(e) => {
            diags.error(
                locator.location(e.marker()),
                "",
                format!("YAML syntax error: {}", e.info()),
            );
            None
        }
    }
}

/// Reads through the value that comes next (at nesting `depth`) without making nodes.
/// Gives whether it defined an anchor, or `None` with the problem recorded (a syntax
/// error, nesting past [`MAX_DEPTH`], the document ending inside it).
fn pass_over<T: Iterator<Item = char>>(
    parser: &mut Parser<T>,
    locator: &mut Locator<'_>,
    diags: &mut Diagnostics,
    depth: usize,
) -> Option<bool> {
    let mut anchored = false;
    let mut open = 0usize;
    loop {
        let (event, marker) = next_event(parser, locator, diags)?;
        match event {
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                anchored |= anchor != 0;
                open += 1;
                if depth + open > MAX_DEPTH {
                    diags.error(
                        locator.location(&marker),
                        "",
                        format!("nesting deeper than {MAX_DEPTH} levels is refused"),
                    );
                    return None;
                }
            }
            Event::SequenceEnd | Event::MappingEnd => open = open.saturating_sub(1),
            Event::Scalar(_, _, anchor, _) => anchored |= anchor != 0,
            Event::Alias(_) => {}
            Event::StreamEnd
            | Event::StreamStart
            | Event::DocumentStart
            | Event::DocumentEnd
            | Event::Nothing => {
                diags.error(
                    locator.location(&marker),
                    "",
                    "YAML syntax error: the document ends inside a value",
                );
                return None;
            }
        }
        if open == 0 {
            return Some(anchored);
        }
    }
}

fn load_inner(
    text: &str,
    diags: &mut Diagnostics,
    skip: &[&[&str]],
) -> Result<Option<YamlNode>, SkippedAnchor> {
    if text.len() > MAX_DOCUMENT_BYTES {
        diags.error(
            Location {
                line: 1,
                col: 1,
                offset: 0,
            },
            "",
            format!(
                "the document is {} bytes; the largest accepted is {} bytes",
                text.len(),
                MAX_DOCUMENT_BYTES
            ),
        );
        return Ok(None);
    }
    // A byte order mark (editors on Windows write one) is not content; offsets still
    // count it, as they are offsets into the file.
    let without_bom = text.strip_prefix('\u{feff}').unwrap_or(text);
    let bom = text.len() - without_bom.len();
    let text = without_bom;
    let mut parser = Parser::new_from_str(text);
    let mut locator = Locator::new(text, bom);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, YamlNode> = HashMap::new();
    let mut root: Option<YamlNode> = None;
    let mut documents = 0usize;
    let mut nodes = 0usize;
    let mut alias_nodes = 0usize;
    // Whether a skipped value defined an anchor: an unknown alias may then be one of them.
    let mut skipped_anchor = false;
    loop {
        let Some((event, marker)) = next_event(&mut parser, &mut locator, diags) else {
            return Ok(None);
        };
        let at = locator.location(&marker);
        let finished: Option<(YamlNode, usize)> = match event {
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => None,
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    diags.error(
                        at,
                        "",
                        "more than one YAML document; a dtk file holds exactly one",
                    );
                    return Ok(None);
                }
                None
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = matches!(style, TScalarStyle::Plain);
                Some((
                    YamlNode {
                        kind: YamlKind::Scalar { text, plain },
                        at,
                    },
                    anchor,
                ))
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(node) => {
                    alias_nodes += node.count();
                    nodes += node.count();
                    if alias_nodes > MAX_ALIAS_NODES || nodes > MAX_NODES {
                        diags.error(
                            at,
                            "",
                            format!(
                                "aliases expand the document beyond {MAX_ALIAS_NODES} nodes; refused as a YAML bomb"
                            ),
                        );
                        return Ok(None);
                    }
                    let mut copy = node.clone();
                    copy.at = at;
                    Some((copy, 0))
                }
                None if skipped_anchor => return Err(SkippedAnchor),
                None => {
                    diags.error(at, "", "alias to an unknown anchor");
                    return Ok(None);
                }
            },
            Event::SequenceStart(anchor, _tag) => {
                if stack.len() >= MAX_DEPTH {
                    diags.error(
                        at,
                        "",
                        format!("nesting deeper than {MAX_DEPTH} levels is refused"),
                    );
                    return Ok(None);
                }
                stack.push(Frame::Seq {
                    at,
                    anchor,
                    items: Vec::new(),
                });
                None
            }
            Event::MappingStart(anchor, _tag) => {
                if stack.len() >= MAX_DEPTH {
                    diags.error(
                        at,
                        "",
                        format!("nesting deeper than {MAX_DEPTH} levels is refused"),
                    );
                    return Ok(None);
                }
                stack.push(Frame::Map {
                    at,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                    seen: None,
                });
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq { at, anchor, items }) => Some((
                    YamlNode {
                        kind: YamlKind::Seq(items),
                        at,
                    },
                    anchor,
                )),
                _ => {
                    diags.error(at, "", "YAML syntax error: unbalanced sequence");
                    return Ok(None);
                }
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    at,
                    anchor,
                    entries,
                    ..
                }) => {
                    // A block mapping's start event comes after its first key: the
                    // mapping starts where that key does.
                    let at = match entries.first() {
                        Some((k, _)) if k.at.offset < at.offset => k.at,
                        _ => at,
                    };
                    Some((
                        YamlNode {
                            kind: YamlKind::Map(entries),
                            at,
                        },
                        anchor,
                    ))
                }
                _ => {
                    diags.error(at, "", "YAML syntax error: unbalanced mapping");
                    return Ok(None);
                }
            },
        };
        let Some((node, anchor)) = finished else {
            continue;
        };
        nodes += 1;
        if nodes > MAX_NODES {
            diags.error(
                at,
                "",
                format!("the document has more than {MAX_NODES} nodes"),
            );
            return Ok(None);
        }
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        // The dotted path of a duplicate key, computed before the frame is borrowed.
        let dup_path = match stack.last() {
            Some(Frame::Map {
                key: Some(k),
                seen,
                entries,
                ..
            }) if k
                .scalar()
                .is_some_and(|n| earlier_key(entries, seen.as_ref(), n).is_some()) =>
            {
                Some(key_path(&stack))
            }
            _ => None,
        };
        let mut key_read = false;
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries, key, seen, ..
            }) => {
                match key.take() {
                    None => {
                        if !matches!(node.kind, YamlKind::Scalar { .. }) {
                            diags.error(node.at, "", "mapping keys must be plain strings");
                        }
                        *key = Some(node);
                        key_read = true;
                    }
                    Some(k) => {
                        // An empty value has no position of its own (the parser reports
                        // where it noticed it, often the next line): use its key's.
                        let mut node = node;
                        if node.is_null() && node.scalar() == Some("") {
                            node.at = k.at;
                        }
                        if let Some(name) = k.scalar() {
                            if let Some(first_line) = earlier_key(entries, seen.as_ref(), name) {
                                diags.error_help(
                                    k.at,
                                    dup_path.as_deref().unwrap_or(name),
                                    format!("duplicate key `{name}` (first defined at line {first_line})"),
                                    "a key may appear once in a mapping: merge the two entries",
                                );
                            } else if let Some(seen) = seen.as_mut() {
                                seen.insert(name.to_owned(), k.at.line);
                            }
                        }
                        entries.push((k, node));
                        if seen.is_none() && entries.len() >= SEEN_AFTER {
                            let mut index = HashMap::with_capacity(entries.len() * 2);
                            for (k, _) in entries.iter() {
                                if let Some(name) = k.scalar() {
                                    index.entry(name.to_owned()).or_insert(k.at.line);
                                }
                            }
                            *seen = Some(index);
                        }
                    }
                }
            }
        }
        if key_read && !skip.is_empty() && skipped(&stack, skip) {
            // Read through the value without making nodes, then forget its key.
            match pass_over(&mut parser, &mut locator, diags, stack.len()) {
                Some(anchored) => skipped_anchor |= anchored,
                None => return Ok(None),
            }
            if let Some(Frame::Map { key, .. }) = stack.last_mut() {
                *key = None;
            }
        }
    }
    Ok(Some(root.unwrap_or(YamlNode {
        kind: YamlKind::Scalar {
            text: String::new(),
            plain: true,
        },
        at: Location {
            line: 1,
            col: 1,
            offset: 0,
        },
    })))
}

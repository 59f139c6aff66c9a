//! Located diagnostics: every error about input names the file, line, column and key.

use serde::{Deserialize, Serialize};
use std::fmt;

use thiserror::Error;

/// A position in a source text. Lines and columns count from 1; `offset` is a byte index
/// into the text (for renderers that underline the source).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Location {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub col: u32,
    /// 0-based byte offset.
    pub offset: usize,
}

/// One problem found in an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as the user named it (or a logical name such as `dtk.service.yaml`).
    pub file: String,
    /// Where in the file.
    pub location: Location,
    /// The offending key as a dotted path from the document root
    /// (`component_defs.web.attributes.port.type`); empty for the whole document.
    pub key: String,
    /// What is wrong, in one sentence.
    pub message: String,
    /// How to fix it, when there is something to say (`did you mean ...?`).
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.location.line, self.location.col, self.message
        )?;
        if !self.key.is_empty() {
            write!(f, " (at `{}`)", self.key)?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// The error returned when a DSL document (`dtk.module.yaml`, `dtk.service.yaml`) or an
/// edit is refused: every problem found, each located, in source order.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct DslError {
    /// The problems, at least one, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
}

impl DslError {
    /// An error with one diagnostic.
    pub fn single(d: Diagnostic) -> Self {
        DslError {
            diagnostics: vec![d],
        }
    }

    /// The file the first diagnostic is about.
    pub fn file(&self) -> &str {
        self.diagnostics
            .first()
            .map(|d| d.file.as_str())
            .unwrap_or("")
    }
}

impl fmt::Display for DslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.diagnostics.len();
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        if n > 1 {
            write!(f, "\n{n} errors")?;
        }
        Ok(())
    }
}

/// Collects diagnostics while a document is checked, so that every problem is reported
/// rather than only the first.
#[derive(Debug, Default)]
pub struct Diagnostics {
    file: String,
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// An empty collector for `file`.
    pub fn new(file: &str) -> Self {
        Diagnostics {
            file: file.to_owned(),
            items: Vec::new(),
        }
    }

    /// The file name diagnostics are attributed to.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Records a problem.
    pub fn error(&mut self, at: Location, key: &str, message: impl Into<String>) {
        self.push(at, key, message.into(), None);
    }

    /// Records a problem with a hint.
    pub fn error_help(
        &mut self,
        at: Location,
        key: &str,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.push(at, key, message.into(), Some(help.into()));
    }

    fn push(&mut self, at: Location, key: &str, message: String, help: Option<String>) {
        self.items.push(Diagnostic {
            file: self.file.clone(),
            location: at,
            key: key.to_owned(),
            message,
            help,
        });
    }

    /// How many problems are recorded.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Forgets every problem recorded after the first `len`.
    pub(crate) fn truncate(&mut self, len: usize) {
        self.items.truncate(len);
    }

    /// Whether any problem was recorded.
    pub fn has_errors(&self) -> bool {
        !self.items.is_empty()
    }

    /// `Ok(value)` when nothing was recorded, else every diagnostic, sorted by position.
    pub fn finish<T>(self, value: T) -> Result<T, DslError> {
        if self.items.is_empty() {
            Ok(value)
        } else {
            let mut diagnostics = self.items;
            diagnostics.sort_by_key(|d| d.location);
            diagnostics.dedup();
            Err(DslError { diagnostics })
        }
    }
}

/// Suggests the candidate closest to `input`, when one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut best: Option<(f64, &'a str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(input, c);
        if score > 0.8 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c)
}

//! Rendering errors: the cause chain in words, and DSL diagnostics with the offending
//! source lines (read again from the file the diagnostic names).

use std::io::{IsTerminal, Write};

use dtk_model::{Diagnostic, DslError};
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, NamedSource};
use serde::Serialize;

use crate::output::{Output, write_json};

/// The `dtk.error/v1` document.
#[derive(Serialize)]
struct ErrorDoc {
    /// The top-level message.
    message: String,
    /// The causes below it, outermost first.
    causes: Vec<String>,
    /// For an invalid DSL document: every located problem.
    diagnostics: Vec<DiagnosticDoc>,
}

#[derive(Serialize)]
struct DiagnosticDoc {
    file: String,
    line: u32,
    column: u32,
    key: String,
    message: String,
    help: Option<String>,
}

/// Prints a failed command's error: a JSON document on stdout with `--json`, else the
/// message, its causes and any DSL diagnostics on stderr.
pub fn error(out: &Output, e: &anyhow::Error) {
    let dsl = e.chain().find_map(|c| c.downcast_ref::<DslError>());
    // The DSL error's own text is the diagnostics, rendered separately.
    let causes: Vec<String> = e
        .chain()
        .skip(1)
        .filter(|c| c.downcast_ref::<DslError>().is_none())
        .map(ToString::to_string)
        .collect();
    if out.is_json() {
        let doc = ErrorDoc {
            message: e.to_string(),
            causes,
            diagnostics: dsl
                .map(|d| d.diagnostics.iter().map(diagnostic_doc).collect())
                .unwrap_or_default(),
        };
        let stdout = std::io::stdout();
        let _ = write_json(&mut stdout.lock(), "dtk.error/v1", &doc);
        return;
    }
    let stderr = std::io::stderr();
    let mut w = stderr.lock();
    let _ = writeln!(w, "error: {e}");
    for c in &causes {
        let _ = writeln!(w, "  caused by: {c}");
    }
    if let Some(dsl) = dsl {
        let _ = write!(w, "{}", dsl_error(dsl, std::io::stderr().is_terminal()));
    }
}

fn diagnostic_doc(d: &Diagnostic) -> DiagnosticDoc {
    DiagnosticDoc {
        file: d.file.clone(),
        line: d.location.line,
        column: d.location.col,
        key: d.key.clone(),
        message: d.message.clone(),
        help: d.help.clone(),
    }
}

/// Renders every diagnostic of a DSL error, each with its source lines when the file it
/// names can be read, else as `file:line:col: message`.
pub fn dsl_error(e: &DslError, color: bool) -> String {
    let theme = if color && std::env::var_os("NO_COLOR").is_none() {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_context_lines(2);
    let mut out = String::new();
    for (i, d) in e.diagnostics.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let rendered = std::fs::read_to_string(&d.file)
            .ok()
            .and_then(|text| render_with_source(&handler, d, text));
        match rendered {
            Some(r) => out.push_str(&r),
            None => {
                out.push_str(&format!("{d}\n"));
            }
        }
    }
    if e.diagnostics.len() > 1 {
        out.push_str(&format!("{} problems\n", e.diagnostics.len()));
    }
    out
}

fn render_with_source(
    handler: &GraphicalReportHandler,
    d: &Diagnostic,
    text: String,
) -> Option<String> {
    let offset = d.location.offset.min(text.len());
    let len = token_len(&text, offset);
    let label = if d.key.is_empty() {
        "here".to_owned()
    } else {
        format!("at `{}`", d.key)
    };
    let mut diag = MietteDiagnostic::new(format!(
        "{}:{}:{}: {}",
        d.file, d.location.line, d.location.col, d.message
    ))
    .with_label(LabeledSpan::at(offset..offset + len, label));
    if let Some(h) = &d.help {
        diag = diag.with_help(h.clone());
    }
    let report = miette::Report::new(diag).with_source_code(NamedSource::new(&d.file, text));
    let mut s = String::new();
    handler.render_report(&mut s, report.as_ref()).ok()?;
    Some(s)
}

/// The length of the token at `offset`, to underline it: up to the end of the line or a
/// YAML separator; at least one character when there is one.
fn token_len(text: &str, offset: usize) -> usize {
    let rest = text.get(offset..).unwrap_or("");
    let len: usize = rest
        .chars()
        .take_while(|c| !matches!(c, '\n' | '\r' | ':' | ',' | '}' | ']' | '#'))
        .map(char::len_utf8)
        .sum();
    let trimmed = rest[..len].trim_end().len();
    if trimmed == 0 {
        rest.chars()
            .next()
            .map_or(0, |c| if c == '\n' { 0 } else { c.len_utf8() })
    } else {
        trimmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_underlined_up_to_a_separator() {
        let t = "a:\n  port: {type: integr}\n";
        let at = t.find("integr").unwrap();
        assert_eq!(token_len(t, at), "integr".len());
        assert_eq!(token_len(t, t.find("port").unwrap()), 4);
        assert_eq!(token_len(t, t.len()), 0);
    }
}

//! Rendering errors: the cause chain in words, and DSL diagnostics with the offending
//! source lines (read again from the file the diagnostic names, a bounded window around
//! the problem: a huge file or a huge line costs no more than a small one).

use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};

use dtk_model::{Diagnostic, DslError};
use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, MietteError,
    MietteSpanContents, SourceCode, SourceSpan, SpanContents,
};
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
    let handler = GraphicalReportHandler::new_themed(theme).with_context_lines(CONTEXT_LINES);
    let mut out = String::new();
    for (i, d) in e.diagnostics.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let rendered = std::fs::File::open(&d.file)
            .ok()
            .and_then(|mut f| Excerpt::read(&mut f, d))
            .and_then(|x| render_with_source(&handler, d, x));
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

/// Lines shown before and after the offending one.
const CONTEXT_LINES: usize = 2;
/// The most bytes read before and after the offending position: an excerpt costs the
/// same whatever the size of the file or of its lines.
const WINDOW: u64 = 4096;
/// The most characters of a line shown; longer lines are cut around the column, with
/// `…` where text is left out.
const MAX_LINE_CHARS: usize = 120;

/// The lines around a diagnostic, read from its file: a bounded window around the
/// offending byte, never the whole file or line.
#[derive(Debug, PartialEq)]
struct Excerpt {
    /// The file's name, as the diagnostic gives it.
    name: String,
    /// The lines shown, joined with `\n`, each at most [`MAX_LINE_CHARS`] characters.
    text: String,
    /// The file's line number (1-based) of the first line of `text`.
    first_line: usize,
    /// The diagnostic's column in the file (0-based, in characters), which the header
    /// shows whatever was cut from the line.
    column: usize,
    /// Where to underline, as a byte range of `text`.
    span: (usize, usize),
}

impl Excerpt {
    /// Reads the excerpt for `d` from `file`: seeks to the diagnostic's byte offset and
    /// reads at most [`WINDOW`] bytes each side of it. `None` when the file is shorter
    /// than the offset (it changed since) or cannot be read.
    fn read(file: &mut (impl Read + Seek), d: &Diagnostic) -> Option<Excerpt> {
        let offset = u64::try_from(d.location.offset).ok()?;
        let len = file.seek(SeekFrom::End(0)).ok()?;
        if offset > len {
            return None;
        }
        let start = offset.saturating_sub(WINDOW);
        file.seek(SeekFrom::Start(start)).ok()?;
        let mut buf = Vec::new();
        file.take(2 * WINDOW).read_to_end(&mut buf).ok()?;
        let at = usize::try_from(offset - start).ok()?.min(buf.len());
        Some(Self::from_window(
            d,
            &buf,
            at,
            start == 0,
            start + 2 * WINDOW >= len,
        ))
    }

    /// Builds the excerpt from `window`, the bytes around the diagnostic (`at` is its
    /// position in them); `starts_file` / `ends_file` say whether the window reaches the
    /// file's start and end, so that a line cut by the window is marked as cut.
    fn from_window(
        d: &Diagnostic,
        window: &[u8],
        at: usize,
        starts_file: bool,
        ends_file: bool,
    ) -> Excerpt {
        let (before, after) = window.split_at(at);
        // The offending line and up to CONTEXT_LINES before it, as far as the window goes.
        let mut lines_before: Vec<&[u8]> = before.split(|b| *b == b'\n').collect();
        let head = lines_before.pop().unwrap_or_default();
        let first_cut = !starts_file && lines_before.is_empty();
        // A line cut by the start of the window is shown only when it is the offending one.
        if !starts_file && !lines_before.is_empty() {
            lines_before.remove(0);
        }
        let keep = lines_before.len().saturating_sub(CONTEXT_LINES);
        let lines_before = &lines_before[keep..];
        let mut lines_after: Vec<&[u8]> = after.split(|b| *b == b'\n').collect();
        let tail = if lines_after.is_empty() {
            &[][..]
        } else {
            lines_after.remove(0)
        };
        let last_cut = !ends_file && lines_after.is_empty();
        if !ends_file && !lines_after.is_empty() {
            lines_after.pop();
        }
        lines_after.truncate(CONTEXT_LINES);

        // The offending line, cut around the column; the lines around it are cut at the
        // same place, so that they stay aligned with it.
        let head = String::from_utf8_lossy(head);
        let tail = String::from_utf8_lossy(tail);
        let mut line = String::new();
        if first_cut {
            line.push('…');
        }
        line.push_str(&head);
        let column = line.chars().count();
        line.push_str(&tail);
        if last_cut {
            line.push('…');
        }
        let from = window_start(&line, column);
        let mut text = String::new();
        for l in lines_before {
            text.push_str(&clip_from(&String::from_utf8_lossy(l), from));
            text.push('\n');
        }
        let shown = clip_from(&line, from);
        let col_in_shown = column - from + usize::from(from > 0);
        let line_start = text.len();
        let span_start = line_start
            + shown
                .char_indices()
                .nth(col_in_shown)
                .map_or(shown.len(), |(i, _)| i);
        let span_len = token_len(&shown, span_start - line_start);
        text.push_str(&shown);
        for l in lines_after {
            text.push('\n');
            text.push_str(&clip_from(&String::from_utf8_lossy(l), from));
        }
        let line_no = usize::try_from(d.location.line).unwrap_or(1).max(1);
        Excerpt {
            name: d.file.clone(),
            text,
            first_line: line_no.saturating_sub(lines_before.len()),
            column: usize::try_from(d.location.col)
                .unwrap_or(1)
                .saturating_sub(1),
            span: (span_start, span_len),
        }
    }
}

/// Where to start showing `line` (a character index) so that at most
/// [`MAX_LINE_CHARS`] characters show with `column` in view.
fn window_start(line: &str, column: usize) -> usize {
    let n = line.trim_end_matches('\r').chars().count();
    if n <= MAX_LINE_CHARS {
        return 0;
    }
    column
        .saturating_sub(MAX_LINE_CHARS / 3)
        .min(n - MAX_LINE_CHARS)
}

/// `line` from character `from` on, at most [`MAX_LINE_CHARS`] characters, with `…` where
/// text is left out.
fn clip_from(line: &str, from: usize) -> String {
    let line = line.trim_end_matches('\r');
    let n = line.chars().count();
    let mut out = String::new();
    if from > 0 {
        out.push('…');
    }
    out.extend(line.chars().skip(from).take(MAX_LINE_CHARS));
    if from + MAX_LINE_CHARS < n {
        out.push('…');
    }
    out
}

impl SourceCode for Excerpt {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let inner =
            self.text
                .as_str()
                .read_span(span, context_lines_before, context_lines_after)?;
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            inner.line() + self.first_line - 1,
            // The header names the diagnostic's place in the file, not in the excerpt.
            self.column,
            inner.line_count(),
        )))
    }
}

fn render_with_source(
    handler: &GraphicalReportHandler,
    d: &Diagnostic,
    excerpt: Excerpt,
) -> Option<String> {
    let (start, len) = excerpt.span;
    let label = if d.key.is_empty() {
        "here".to_owned()
    } else {
        format!("at `{}`", d.key)
    };
    let mut diag = MietteDiagnostic::new(format!(
        "{}:{}:{}: {}",
        d.file, d.location.line, d.location.col, d.message
    ))
    .with_label(LabeledSpan::at(start..start + len, label));
    if let Some(h) = &d.help {
        diag = diag.with_help(h.clone());
    }
    let report = miette::Report::new(diag).with_source_code(excerpt);
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

    /// A reader that counts the bytes read from it.
    struct Counting<R> {
        inner: R,
        read: u64,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read += n as u64;
            Ok(n)
        }
    }

    impl<R: Seek> Seek for Counting<R> {
        fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
            self.inner.seek(pos)
        }
    }

    fn diag(file: &str, line: u32, col: u32, offset: usize) -> Diagnostic {
        Diagnostic {
            file: file.to_owned(),
            location: dtk_model::Location { line, col, offset },
            key: "description".to_owned(),
            message: "something is wrong".to_owned(),
            help: None,
        }
    }

    #[test]
    fn an_excerpt_holds_the_line_and_its_context() {
        let text = "a: 1\nb: 2\nc: 3\nd: {type: integr}\ne: 5\nf: 6\ng: 7\n";
        let offset = text.find("integr").unwrap();
        let mut r = std::io::Cursor::new(text.as_bytes().to_vec());
        let x = Excerpt::read(&mut r, &diag("f.yaml", 4, 10, offset)).unwrap();
        assert_eq!(x.first_line, 2);
        assert_eq!(x.text, "b: 2\nc: 3\nd: {type: integr}\ne: 5\nf: 6");
        assert_eq!(&x.text[x.span.0..x.span.0 + x.span.1], "integr");
    }

    #[test]
    fn a_huge_one_line_document_is_excerpted_in_bounded_work() {
        // 50 MB on one line, the error in its middle: the excerpt reads a window around
        // it and shows a line cut to a readable width.
        let mut text = vec![b'x'; 50_000_000];
        text.splice(25_000_000..25_000_006, b"integr".iter().copied());
        let mut r = Counting {
            inner: std::io::Cursor::new(text),
            read: 0,
        };
        let x = Excerpt::read(&mut r, &diag("huge.yaml", 1, 25_000_001, 25_000_000)).unwrap();
        assert!(r.read <= 2 * WINDOW, "read {} bytes", r.read);
        assert_eq!(x.first_line, 1);
        assert!(x.text.chars().count() <= MAX_LINE_CHARS + 2, "{}", x.text);
        assert!(
            x.text.starts_with('…') && x.text.ends_with('…'),
            "{}",
            x.text
        );
        assert!(x.text[x.span.0..].starts_with("integr"));
    }

    #[test]
    fn a_huge_document_refused_by_size_renders_a_short_error() {
        // What `dtk module validate` prints for a 50 MB one-line module: the size
        // diagnostic at 1:1, with a short excerpt.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dtk.module.yaml");
        let mut text = String::from("{module: demo/big, version: 1.0.0, description: ");
        text.push_str(&"x".repeat(50_000_000));
        text.push('}');
        std::fs::write(&path, &text).unwrap();
        let file = path.to_string_lossy().into_owned();
        let err = dtk_model::dsl::parse_module(&text, &file).unwrap_err();
        drop(text);
        let out = dsl_error(&err, false);
        assert!(out.len() < 2_000, "{} bytes:\n{out}", out.len());
        assert!(
            out.contains(":1:1: the document is 50000049 bytes"),
            "{out}"
        );
        assert!(
            out.contains("1 │ {module: demo/big, version: 1.0.0, description: xxx"),
            "{out}"
        );
    }

    #[test]
    fn line_numbers_and_underlines_follow_the_file_with_non_ascii_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dtk.module.yaml");
        let text = "module: demo/x\nversion: 1.0.0\ndescription: \"ééééééééé\"\ncomponent_defs:\n  web:\n    attributes:\n      port: {type: integr}\n";
        std::fs::write(&path, text).unwrap();
        let file = path.to_string_lossy().into_owned();
        let err = dtk_model::dsl::parse_module(text, &file).unwrap_err();
        let out = dsl_error(&err, false);
        let underline = out.lines().find(|l| l.contains('┬')).unwrap();
        let code = out.lines().find(|l| l.contains("{type: integr}")).unwrap();
        assert!(code.starts_with(" 7 │"), "{out}");
        let start = |l: &str, i: usize| l[..i].chars().count();
        assert_eq!(
            underline.find(['─', '┬']).map(|i| start(underline, i)),
            code.find("integr").map(|i| start(code, i)),
            "{out}"
        );
    }

    #[test]
    fn a_long_line_is_cut_around_the_column_and_the_header_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("long.yaml");
        let mut line = "k: ".to_owned();
        line.push_str(&"x".repeat(396));
        line.push_str("bad");
        line.push_str(&"y".repeat(100));
        let text = format!("a: 1\n{line}\nb: 2\n");
        std::fs::write(&path, &text).unwrap();
        let file = path.to_string_lossy().into_owned();
        let offset = text.find("bad").unwrap();
        let e = DslError::single(diag(&file, 2, 400, offset));
        let out = dsl_error(&e, false);
        assert!(out.contains(&format!("╭─[{file}:2:400]")), "{out}");
        let code = out.lines().find(|l| l.contains("bad")).unwrap();
        let underline = out.lines().find(|l| l.contains('┬')).unwrap();
        let at = |l: &str, i: usize| l[..i].chars().count();
        assert_eq!(
            underline.find(['─', '┬']).map(|i| at(underline, i)),
            code.find("bad").map(|i| at(code, i)),
            "{out}"
        );
        assert!(code.chars().count() < 140, "{out}");
    }
}

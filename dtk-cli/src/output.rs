//! Human and JSON output.
//!
//! With `--json`, every command prints exactly one JSON document on stdout, and so does a
//! failure (schema `dtk.error/v1`, exit status 1). Every document is an object whose
//! `"schema"` field names its schema and version (`"dtk.module.list/v1"`); a field is
//! only ever added within a version, never removed or changed in meaning. The schemas
//! are described in `dtk-cli/JSON.md`.
//!
//! Human output goes to stdout too; errors go to stderr.

use std::io::{self, Write};

use serde::Serialize;

/// How a command prints its result.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

/// A JSON document: the schema name followed by the body's fields.
#[derive(Serialize)]
struct Document<'a, T: Serialize> {
    schema: &'a str,
    #[serde(flatten)]
    body: &'a T,
}

impl Output {
    /// Human output, or JSON when `json` is set.
    pub fn new(json: bool) -> Output {
        Output { json }
    }

    /// Whether `--json` was given.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints a command's result: `body` as a JSON document of `schema` with `--json`,
    /// else what `human` writes.
    pub fn emit<T: Serialize>(
        &self,
        schema: &str,
        body: &T,
        human: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> anyhow::Result<()> {
        let stdout = io::stdout();
        let mut w = stdout.lock();
        if self.json {
            write_json(&mut w, schema, body)?;
        } else {
            human(&mut w)?;
        }
        w.flush()?;
        Ok(())
    }
}

/// Writes one JSON document (pretty, with a final newline).
pub fn write_json<T: Serialize>(w: &mut dyn Write, schema: &str, body: &T) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *w, &Document { schema, body })?;
    writeln!(w)
}

/// Whether an error is a closed stdout (`dtk module list | head`): not a failure.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC` (the epoch itself when
/// out of range).
pub fn utc_time(secs: i64) -> String {
    timestamp(secs)
        .strftime("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

/// Formats seconds since the Unix epoch as RFC 3339 (`2024-05-01T12:00:00Z`).
pub fn rfc3339(secs: i64) -> String {
    timestamp(secs).to_string()
}

fn timestamp(secs: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// Left-aligned columns: each row padded to the widest cell of each column.
pub fn table(w: &mut dyn Write, rows: &[Vec<String>]) -> io::Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        writeln!(w, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}

/// An error whose details the command already printed (a failed run's report): `main`
/// exits 1 without printing a second JSON document, and prints only the one-line message
/// in human mode.
#[derive(Debug)]
pub struct Reported(pub String);

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Reported {}

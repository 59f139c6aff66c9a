//! Command templates: `{{attr}}` placeholders substituted shell-quoted, so that no
//! attribute value is ever executed as shell syntax.

use thiserror::Error;

/// The error returned when a command template cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RenderError {
    /// `{{` without a matching `}}`.
    #[error("unclosed `{{{{` at byte {offset} of `{template}`")]
    Unclosed {
        /// The template.
        template: String,
        /// Where the placeholder starts.
        offset: usize,
    },
    /// A placeholder names no attribute of the component.
    #[error("`{{{{{name}}}}}` names no attribute of the component")]
    Unknown {
        /// The placeholder's name.
        name: String,
    },
}

/// Quotes `s` for a POSIX shell: the result is one word whose value is exactly `s`.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '_' | '-' | '.' | '/' | ':' | ',' | '+' | '=' | '@')
        })
    {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// The names of the placeholders in `template`, in order.
pub fn placeholders(template: &str) -> Result<Vec<String>, RenderError> {
    let mut names = Vec::new();
    render(template, |name| {
        names.push(name.to_owned());
        Some(String::new())
    })?;
    Ok(names)
}

/// Substitutes every `{{name}}` (whitespace inside the braces is ignored) with
/// `shell_quote(lookup(name))`.
pub fn render(
    template: &str,
    lookup: impl FnMut(&str) -> Option<String>,
) -> Result<String, RenderError> {
    substitute(template, lookup, true)
}

/// Substitutes every `{{name}}` with `lookup(name)` as it is, not quoted: for files
/// (`ADD` templates) and paths, never for shell lines.
pub fn render_raw(
    template: &str,
    lookup: impl FnMut(&str) -> Option<String>,
) -> Result<String, RenderError> {
    substitute(template, lookup, false)
}

fn substitute(
    template: &str,
    mut lookup: impl FnMut(&str) -> Option<String>,
    quote: bool,
) -> Result<String, RenderError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    let mut consumed = 0usize;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(RenderError::Unclosed {
                template: template.to_owned(),
                offset: consumed + start,
            });
        };
        let name = after[..end].trim();
        match lookup(name) {
            Some(v) if quote => out.push_str(&shell_quote(&v)),
            Some(v) => out.push_str(&v),
            None => {
                return Err(RenderError::Unknown {
                    name: name.to_owned(),
                });
            }
        }
        consumed += start + 2 + end + 2;
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

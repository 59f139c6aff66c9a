//! HTML helpers: escaping (every value from a service goes through [`esc`]), the page
//! shell, and how times and durations read.

use std::fmt::Write as _;

/// `s` escaped for HTML text and double-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` escaped for a URL path segment.
pub fn url_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The start of a page: head (stylesheet, script), header with the breadcrumb, and
/// `<main>`. `body_attrs` are extra attributes of `<body>`, already escaped.
pub fn open_page(
    out: &mut String,
    title: &str,
    crumbs: &[(&str, Option<String>)],
    body_attrs: &str,
) {
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} \u{2014} dtk</title>\
         <link rel=\"stylesheet\" href=\"/static/ui.css\">\
         <script src=\"/static/ui.js\" defer></script></head><body{body_attrs}>\
         <header><nav aria-label=\"breadcrumb\"><a href=\"/\" class=\"brand\">dtk</a>",
        esc(title)
    );
    for (name, link) in crumbs {
        out.push_str(" <span class=\"sep\">/</span> ");
        match link {
            Some(href) => {
                let _ = write!(out, "<a href=\"{}\">{}</a>", esc(href), esc(name));
            }
            None => {
                let _ = write!(out, "<span>{}</span>", esc(name));
            }
        }
    }
    out.push_str("</nav><span class=\"readonly\">read-only</span></header><main>");
}

/// The end of a page.
pub fn close_page(out: &mut String) {
    out.push_str("</main></body></html>\n");
}

/// A UTC time, `2024-05-01 12:00:00 UTC`, from seconds since the Unix epoch.
pub fn utc(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

/// A duration in milliseconds as people read it: `850 ms`, `2.4 s`, `3 min 5 s`.
pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_times() {
        assert_eq!(
            esc("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(url_segment("a b/c"), "a%20b%2Fc");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_714_564_800), "2024-05-01 12:00:00 UTC");
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(2400), "2.4 s");
        assert_eq!(duration(185_000), "3 min 5 s");
    }
}

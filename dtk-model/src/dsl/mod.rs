//! The YAML DSL: decoding `dtk.module.yaml` and `dtk.service.yaml` text into the
//! validated model, and writing both back as canonical YAML.
//!
//! Decoding walks the located YAML tree ([`crate::yaml`]) by hand rather than through
//! serde, so that every problem is reported with its file, line, column and key path,
//! and all of them at once. References are checked where they are written: components
//! of the same module fully (attributes, types, actions), components of dependencies by
//! their module name only (the rest is staging's job).

mod body;
pub(crate) mod decode;
pub(crate) mod module_file;
mod normalize;
mod scope;
mod service_file;
mod write;

pub use body::MAX_CARDINALITY;
pub use module_file::MAX_ATTEMPTS;
pub use write::{write_module, write_service};

use crate::diag::{DslError, Location};
use crate::module::Module;
use crate::service::ServiceDoc;

/// Parses and validates a module document. `file` names the text in diagnostics.
pub fn parse_module(text: &str, file: &str) -> Result<Module, DslError> {
    module_file::parse(text, file)
}

/// Parses and validates a service document. `file` names the text in diagnostics.
pub fn parse_service(text: &str, file: &str) -> Result<ServiceDoc, DslError> {
    service_file::parse(text, file)
}

/// The error for a document that could not be decoded: what was collected, or (should
/// nothing have been) a generic diagnostic, so that an error is never empty.
fn fail(ctx: decode::Ctx) -> DslError {
    let file = ctx.diags.file().to_owned();
    match ctx.diags.finish(()) {
        Err(e) => e,
        Ok(()) => DslError::single(crate::diag::Diagnostic {
            file,
            location: Location {
                line: 1,
                col: 1,
                offset: 0,
            },
            key: String::new(),
            message: "the document could not be read".to_owned(),
            help: None,
        }),
    }
}

/// Parses a value written as YAML on a command line (`4`, `true`, `hello`, `[a, b]`,
/// `{k: v}`) with the DSL's scalar typing. `file` names the text in diagnostics.
pub fn parse_value(text: &str, file: &str) -> Result<crate::value::Value, DslError> {
    let mut diags = crate::diag::Diagnostics::new(file);
    match crate::yaml::load(text, &mut diags) {
        Some(node) if !diags.has_errors() => Ok(decode::node_value(&node)),
        _ => Err(diags.finish(()).err().unwrap_or_else(|| {
            DslError::single(crate::diag::Diagnostic {
                file: file.to_owned(),
                location: Location {
                    line: 1,
                    col: 1,
                    offset: 0,
                },
                key: String::new(),
                message: "the value could not be read".to_owned(),
                help: None,
            })
        })),
    }
}

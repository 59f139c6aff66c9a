//! Parsed documents in a compact binary form, for parse caches (`dtk_catalog::parse_cache`):
//! a large service's document takes most of a second to parse and a few tens of
//! milliseconds to read back from this form.
//!
//! An entry is a header (magic, [`FINGERPRINT`], a CRC-32 of the body) and the body, the
//! parsed value in [postcard](https://docs.rs/postcard). [`decode`] gives back a value only
//! when the header is this build's and the body is whole: an entry written by another
//! build of the parser (whose output may differ for the same text) or damaged on disk is
//! refused, and the caller parses the text again. This module does no IO.

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// A hash of this crate's sources and version, computed when it is built: the parser and
/// types that wrote an entry. Entries of other builds are refused.
pub const FINGERPRINT: u64 = include!(concat!(env!("OUT_DIR"), "/fingerprint.rs"));

const MAGIC: &[u8; 8] = b"dtkparse";
const HEADER: usize = MAGIC.len() + 8 + 4;

/// Why an entry was not read back.
#[derive(Debug, Error)]
pub enum CacheError {
    /// Not an entry of this cache (too short, or another file).
    #[error("not a parse cache entry")]
    NotAnEntry,
    /// Written by another build of the parser.
    #[error("written by another build (fingerprint {found:#x}, this build {FINGERPRINT:#x})")]
    OtherBuild {
        /// The entry's fingerprint.
        found: u64,
    },
    /// The body's checksum does not match: the entry was damaged.
    #[error("damaged (checksum mismatch)")]
    Damaged,
    /// The body does not decode as the expected type.
    #[error("undecodable: {0}")]
    Decode(#[from] postcard::Error),
}

/// The entry for `value`.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CacheError> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FINGERPRINT.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let mut out = postcard::to_extend(value, out)?;
    let crc = crc32fast::hash(&out[HEADER..]);
    out[HEADER - 4..HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// The value an entry holds, if it is whole and of this build.
pub fn decode<T: DeserializeOwned>(entry: &[u8]) -> Result<T, CacheError> {
    let (Some(magic), Some(fp), Some(crc)) = (
        entry.get(..MAGIC.len()),
        entry.get(MAGIC.len()..MAGIC.len() + 8),
        entry.get(HEADER - 4..HEADER),
    ) else {
        return Err(CacheError::NotAnEntry);
    };
    if magic != MAGIC {
        return Err(CacheError::NotAnEntry);
    }
    let found = u64::from_le_bytes(fp.try_into().map_err(|_| CacheError::NotAnEntry)?);
    if found != FINGERPRINT {
        return Err(CacheError::OtherBuild { found });
    }
    let crc = u32::from_le_bytes(crc.try_into().map_err(|_| CacheError::NotAnEntry)?);
    let body = &entry[HEADER..];
    if crc32fast::hash(body) != crc {
        return Err(CacheError::Damaged);
    }
    let (value, rest) = postcard::take_from_bytes(body)?;
    if !rest.is_empty() {
        return Err(CacheError::Damaged);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::Module;
    use crate::service::ServiceDoc;

    const MODULE: &str = r#"
module: demo/app
version: 1.2.0
dsl_version: 1.0.0
description: a module
dependencies:
  dtk/local: ">= 1.0"
component_defs:
  web:
    attributes:
      port: {type: integer, default: 8080}
      name: {type: string, required: true}
      tags: {type: array, default: [a, b]}
      conf: {type: hash, default: {k: v, n: 1.5, t: true, z: ~}}
    actions:
      create:
        commands:
          - RUN echo {{name}}
          - RUN ADD files/a.conf /etc/a.conf template owner=root mode=0644
      delete: {provider: local.thing}
assemblies:
  site:
    description: one node
    nodes:
      n1:
        attributes: {image: ubuntu}
        components:
          - web:
              attributes: {name: x}
workflows:
  restart:
    subtask_order: sequential
    subtasks:
      - name: one
        ordered_components: [web]
"#;

    fn module() -> Module {
        crate::dsl::parse_module(MODULE, "m.yaml").expect("module parses")
    }

    #[test]
    fn a_module_reads_back_equal() {
        let m = module();
        let back: Module = decode(&encode(&m).expect("encodes")).expect("decodes");
        assert_eq!(back, m);
    }

    #[test]
    fn a_service_document_reads_back_equal() {
        let m = module();
        let asm = &m.assemblies["site"];
        let doc = ServiceDoc {
            dsl_version: "1.0.0".to_owned(),
            name: "s1".to_owned(),
            staged_from: Some(crate::service::StagedFrom {
                module: m.id.clone(),
                version: m.version.clone(),
                assembly: "site".to_owned(),
            }),
            target: Some("local".to_owned()),
            is_target: false,
            dependencies: std::collections::BTreeMap::from([(m.id.clone(), m.version.clone())]),
            nodes: asm.nodes.clone(),
            components: asm.components.clone(),
            workflows: m.workflows.clone(),
            at: crate::Location::default(),
        };
        let text = crate::dsl::write_service(&doc);
        let parsed = crate::dsl::parse_service(&text, "s.yaml").expect("parses");
        let back: ServiceDoc = decode(&encode(&parsed).expect("encodes")).expect("decodes");
        assert_eq!(back, parsed);
    }

    #[test]
    fn every_kind_of_value_reads_back_equal_and_json_is_unchanged() {
        use crate::value::Value;
        use std::collections::BTreeMap;
        let v = Value::Array(vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(-4),
            Value::Float(2.5),
            Value::Str("x".into()),
            Value::Hash(BTreeMap::from([("k".to_owned(), Value::Int(1))])),
        ]);
        let back: Value = decode(&encode(&v).expect("encodes")).expect("decodes");
        assert_eq!(back, v);
        let json = serde_json::to_string(&v).expect("json");
        assert_eq!(json, r#"[null,true,-4,2.5,"x",{"k":1}]"#);
        let from_json: Value = serde_json::from_str(&json).expect("json back");
        assert_eq!(from_json, v);
        let big: Value = serde_json::from_str("18446744073709551615").expect("u64");
        assert_eq!(big, Value::Float(18_446_744_073_709_551_615.0));
    }

    #[test]
    fn a_damaged_or_foreign_entry_is_refused() {
        let entry = encode(&module()).expect("encodes");
        let mut flipped = entry.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x55;
        assert!(matches!(
            decode::<Module>(&flipped),
            Err(CacheError::Damaged)
        ));
        let mut other = entry.clone();
        other[8] ^= 1;
        assert!(matches!(
            decode::<Module>(&other),
            Err(CacheError::OtherBuild { .. })
        ));
        assert!(matches!(
            decode::<Module>(&entry[..10]),
            Err(CacheError::NotAnEntry)
        ));
        assert!(matches!(
            decode::<Module>(b"dtkparsX and more bytes than a header"),
            Err(CacheError::NotAnEntry)
        ));
        let truncated = &entry[..entry.len() - 3];
        assert!(decode::<Module>(truncated).is_err());
        // The right header on a body of another type: refused, not misread.
        let doc_entry = encode(&"just a string").expect("encodes");
        assert!(decode::<Module>(&doc_entry).is_err());
    }
}

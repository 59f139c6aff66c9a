//! Unit tests of internal helpers.
#![allow(clippy::unwrap_used)]

use dtk_model::module::AttrType;
use dtk_model::provider::Secrets;
use dtk_model::value::Value;

use crate::exec::env_name;

#[test]
fn env_names_are_attribute_names_made_valid() {
    assert_eq!(env_name("port"), "port");
    assert_eq!(env_name("db_host"), "db_host");
    assert_eq!(env_name("max-conn"), "max_conn");
    assert_eq!(env_name("a.b"), "a_b");
    assert_eq!(env_name("9lives"), "_9lives");
}

#[test]
fn typed_outputs() {
    use crate::exec::typed_value as t;
    assert_eq!(t(AttrType::Integer, " 42 "), Value::Int(42));
    assert_eq!(t(AttrType::Integer, "x"), Value::from("x"));
    assert_eq!(t(AttrType::Boolean, "true"), Value::Bool(true));
    assert_eq!(
        t(AttrType::Array, "[1,2]"),
        Value::Array(vec![Value::Int(1), Value::Int(2)])
    );
    assert_eq!(t(AttrType::String, " s "), Value::from(" s "));
}

#[test]
fn redaction() {
    let mut s = Secrets::default();
    s.0.insert("k".into(), Value::from("hunter2"));
    s.0.insert("short".into(), Value::from("ab"));
    assert_eq!(
        crate::exec::redact("pw=hunter2 ab", &s),
        "pw=<redacted> ab",
        "values under 3 characters are left alone"
    );
}

#[test]
fn action_targets_parse() {
    let t: crate::ActionTarget = "workers:2/app::web[x].smoke_test".parse().unwrap();
    assert_eq!(t.node.as_deref(), Some("workers:2"));
    assert_eq!(t.component.to_string(), "app::web[x]");
    assert_eq!(t.action, "smoke_test");
    assert_eq!(t.to_string(), "workers:2/app::web[x].smoke_test");
    assert!("web.".parse::<crate::ActionTarget>().is_err());
    assert!("w:x/web.a".parse::<crate::ActionTarget>().is_err());
}

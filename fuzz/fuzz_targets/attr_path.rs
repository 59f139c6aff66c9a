//! Any text given to the identifier parsers (attribute paths, component references,
//! module ids, versions and requirements): no panic, and what parses prints back to text
//! that parses to the same value.
#![no_main]

use std::str::FromStr;

use dtk_model::ident::{AttrPath, ComponentRef, ModuleId, ModuleVersion, VersionReq};
use libfuzzer_sys::fuzz_target;

fn round_trips<T>(s: &str)
where
    T: FromStr + ToString + PartialEq + std::fmt::Debug,
{
    if let Ok(v) = s.parse::<T>() {
        let text = v.to_string();
        match text.parse::<T>() {
            Ok(back) => assert_eq!(v, back, "{s:?} printed as {text:?}"),
            Err(_) => panic!("{s:?} parsed, but its printed form {text:?} does not"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    round_trips::<AttrPath>(s);
    round_trips::<ComponentRef>(s);
    round_trips::<ModuleId>(s);
    round_trips::<ModuleVersion>(s);
    let _ = VersionReq::from_str(s);
});

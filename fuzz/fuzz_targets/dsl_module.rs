//! Any bytes given to the module parser: no panic, every error located, and any module it
//! accepts written back and parsed again is the same module.
#![no_main]

use dtk_model::dsl::{parse_module, write_module};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse_module(&text, "dtk.module.yaml") {
        Ok(mut module) => {
            let written = write_module(&module);
            let mut back = match parse_module(&written, "written.yaml") {
                Ok(m) => m,
                Err(e) => panic!("an accepted module, written, is refused: {e}\n{written}"),
            };
            module.clear_locations();
            back.clear_locations();
            assert_eq!(module, back, "written:\n{written}");
        }
        Err(e) => {
            assert!(!e.diagnostics.is_empty());
            for d in &e.diagnostics {
                assert!(d.location.line >= 1 && d.location.col >= 1, "{d}");
            }
        }
    }
});

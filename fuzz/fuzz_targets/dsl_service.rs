//! Any bytes given to the service-document and value parsers: no panic, every error
//! located, and any document accepted written back and parsed again is the same.
#![no_main]

use dtk_model::dsl::{parse_service, parse_value, write_service};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse_service(&text, "dtk.service.yaml") {
        Ok(mut doc) => {
            let written = write_service(&doc);
            let mut back = match parse_service(&written, "written.yaml") {
                Ok(d) => d,
                Err(e) => panic!("an accepted document, written, is refused: {e}\n{written}"),
            };
            doc.clear_locations();
            back.clear_locations();
            assert_eq!(doc, back, "written:\n{written}");
        }
        Err(e) => {
            for d in &e.diagnostics {
                assert!(d.location.line >= 1 && d.location.col >= 1, "{d}");
            }
        }
    }
    let _ = parse_value(&text, "VALUE");
});

//! Unit tests of the crate's private parts; the catalog as a whole is tested in
//! `tests/it`.

use std::path::Path;

use gix::ObjectId;

use crate::journal::{Journal, RefChange};

#[test]
fn journal_round_trips() {
    let a = ObjectId::from_hex(b"0123456789abcdef0123456789abcdef01234567").unwrap();
    let b = ObjectId::from_hex(b"89abcdef0123456789abcdef0123456789abcdef").unwrap();
    let j = Journal {
        branch: RefChange {
            name: "refs/heads/modules/a/b".into(),
            old: Some(a),
            new: b,
        },
        tag: RefChange {
            name: "refs/tags/a/b/1.0.0".into(),
            old: None,
            new: b,
        },
    };
    let text = j.encode();
    assert_eq!(Journal::decode(&text, Path::new("j")).unwrap(), j);
    assert!(Journal::decode("garbage", Path::new("j")).is_err());
    assert!(Journal::decode(&text[..text.len() - 10], Path::new("j")).is_err());
}

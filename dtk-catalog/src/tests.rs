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

mod resolution {
    //! Properties of the selection algorithm over random catalogs held in memory.

    use std::collections::BTreeMap;

    use dtk_model::{ModuleId, ModuleVersion, VersionReq};
    use proptest::prelude::*;

    use crate::ResolveError;
    use crate::resolve::{Source, select};

    type Deps = Vec<(ModuleId, VersionReq)>;

    /// A catalog in memory: module → version → dependencies.
    #[derive(Debug, Clone)]
    struct Table(BTreeMap<ModuleId, BTreeMap<ModuleVersion, Deps>>);

    impl Source for Table {
        fn versions(&mut self, id: &ModuleId) -> Result<Vec<ModuleVersion>, ResolveError> {
            Ok(self
                .0
                .get(id)
                .map(|vs| vs.keys().cloned().collect())
                .unwrap_or_default())
        }

        fn dependencies(
            &mut self,
            id: &ModuleId,
            version: &ModuleVersion,
        ) -> Result<Deps, ResolveError> {
            Ok(self
                .0
                .get(id)
                .and_then(|vs| vs.get(version))
                .cloned()
                .unwrap_or_default())
        }
    }

    const VERSIONS: &[&str] = &["0.1.0", "1.0.0", "1.1.0", "1.2.0", "2.0.0", "master"];
    const REQS: &[&str] = &["*", "^1", "^1.1", "<2", ">=1.2", "^2", "=1.0.0", "master"];

    fn module(i: usize) -> ModuleId {
        format!("m/m{i}").parse().unwrap()
    }

    /// Up to 7 modules (module 7 is never published: a dependency on it is missing),
    /// each with some versions, each version with dependencies on others.
    fn table() -> impl Strategy<Value = Table> {
        let version = (
            0..VERSIONS.len(),
            proptest::collection::vec((0..8usize, 0..REQS.len()), 0..4),
        );
        let versions = proptest::collection::vec(version, 1..4);
        proptest::collection::vec(versions, 1..7).prop_map(|modules| {
            let mut t = BTreeMap::new();
            for (i, versions) in modules.into_iter().enumerate() {
                let mut vs = BTreeMap::new();
                for (v, deps) in versions {
                    let deps: Deps = deps
                        .into_iter()
                        .filter(|(d, _)| *d != i)
                        .map(|(d, r)| (module(d), REQS[r].parse().unwrap()))
                        .collect();
                    vs.insert(VERSIONS[v].parse().unwrap(), deps);
                }
                t.insert(module(i), vs);
            }
            Table(t)
        })
    }

    /// A newest root whose dependencies cannot be met (one of them wants an older root)
    /// gives way to the newest root that resolves.
    #[test]
    fn an_unresolvable_newest_root_gives_way_to_an_older_one() {
        let v = |s: &str| -> ModuleVersion { s.parse().unwrap() };
        let mut t = Table(BTreeMap::from([
            (
                module(0),
                BTreeMap::from([
                    (v("1.1.0"), vec![]),
                    (v("2.0.0"), vec![(module(5), "*".parse().unwrap())]),
                ]),
            ),
            (
                module(5),
                BTreeMap::from([(v("0.1.0"), vec![(module(0), "^1".parse().unwrap())])]),
            ),
        ]));
        let sel = select(&mut t, &module(0), &"*".parse().unwrap()).unwrap();
        assert_eq!(sel[&module(0)].0, v("1.1.0"));
        assert!(!sel.contains_key(&module(5)));
        // Asked for 2.x only, the conflict is reported.
        let e = select(&mut t, &module(0), &"^2".parse().unwrap()).unwrap_err();
        assert!(
            matches!(
                e,
                ResolveError::NoMatchingVersion { .. } | ResolveError::Conflict { .. }
            ),
            "{e}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn a_resolution_meets_every_requirement_with_the_highest_versions(
            mut t in table(),
            root_req in 0..REQS.len(),
        ) {
            let root = module(0);
            let req: VersionReq = REQS[root_req].parse().unwrap();
            match select(&mut t, &root, &req) {
                Ok(sel) => {
                    let (root_version, _) = &sel[&root];
                    prop_assert!(req.matches(root_version));
                    for (m, (v, required_by)) in &sel {
                        // Every dependency of a selected version is selected, matching.
                        for (d, r) in t.dependencies(m, v).unwrap() {
                            let Some((dv, _)) = sel.get(&d) else {
                                return Err(TestCaseError::fail(format!("{d} missing")));
                            };
                            prop_assert!(r.matches(dv), "{m}@{v} needs {d} {r}, got {dv}");
                        }
                        // Every selected module is required by someone selected.
                        prop_assert!(!required_by.is_empty());
                        for q in required_by {
                            prop_assert!(q.req.matches(v));
                            if let Some((by, bv)) = &q.by {
                                prop_assert_eq!(&sel[by].0, bv);
                            }
                        }
                        // No higher published version meets all of them.
                        if m != &root {
                            let higher = t.versions(m).unwrap().into_iter().filter(|h| h > v)
                                .find(|h| required_by.iter().all(|q| q.req.matches(h)));
                            prop_assert!(higher.is_none(), "{m}: {v} chosen over {higher:?}");
                        }
                    }
                }
                Err(ResolveError::ModuleNotFound { module, .. }) => {
                    prop_assert!(t.versions(&module).unwrap().is_empty());
                }
                // The root is tried at every version the request allows, from the highest;
                // an error about the root is the highest one's, whose requirements another
                // root version may meet (and then fail on something else). The properties
                // below hold for the other modules.
                Err(ResolveError::NoMatchingVersion { module, required_by, available }) => {
                    prop_assert_eq!(&available, &t.versions(&module).unwrap());
                    if module != root {
                        prop_assert!(!available.iter().any(|v| required_by.req.matches(v)));
                    }
                }
                Err(ResolveError::Conflict { module, requirements, available }) => {
                    prop_assert!(requirements.len() >= 2);
                    if module != root {
                        prop_assert!(!available.iter().any(|v| requirements.iter().all(|q| q.req.matches(v))));
                    }
                    for q in &requirements {
                        prop_assert!(available.iter().any(|v| q.req.matches(v)));
                    }
                }
                Err(ResolveError::Unsettled { modules }) => {
                    prop_assert!(!modules.is_empty());
                }
                Err(e) => return Err(TestCaseError::fail(format!("unexpected error: {e}"))),
            }
        }
    }
}

// The remote: URLs.
mod remote_urls {
    use crate::remote::{GitRemote, redact_url};

    #[test]
    fn passwords_are_removed_from_urls() {
        assert_eq!(
            redact_url("https://alice:s3cret@git.example.com/team/dtk.git"),
            "https://alice:***@git.example.com/team/dtk.git"
        );
        assert_eq!(
            redact_url("ssh://git@host:2222/srv/dtk.git"),
            "ssh://git@host:2222/srv/dtk.git"
        );
        assert_eq!(redact_url("git@host:team/dtk.git"), "git@host:team/dtk.git");
        assert_eq!(redact_url("/srv/dtk.git"), "/srv/dtk.git");
    }

    #[test]
    fn urls_that_git_would_read_as_options_are_refused() {
        assert!(GitRemote::new("--upload-pack=touch /tmp/x").is_err());
        assert!(GitRemote::new("").is_err());
        assert!(GitRemote::new("a\nb").is_err());
        assert!(GitRemote::new("git://127.0.0.1:9418/x.git").is_ok());
    }
}

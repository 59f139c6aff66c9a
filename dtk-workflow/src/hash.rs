//! Desired-state hashes and input digests: how the planner tells what changed.

use std::borrow::Cow;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;

use dtk_model::instance::{ComponentId, ComponentInstance, LinkSource};
use dtk_model::value::{Attributes, Value};
use sha2::{Digest, Sha256};

use dtk_model::module::ActionKind;

/// Hex characters kept of a SHA-256 (128 bits): plenty to tell versions of one component
/// apart, and half the memory per task.
const HASH_HEX_LEN: usize = 32;

struct HashWriter(Sha256, String);

impl io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl HashWriter {
    fn new(domain: &str) -> Self {
        let mut w = HashWriter(Sha256::new(), String::new());
        w.text(domain);
        w
    }

    /// [`text`](Self::text) of `v`'s `Display` form, formatted into a buffer the writer
    /// keeps (no string per call).
    fn display(&mut self, v: &impl std::fmt::Display) {
        use std::fmt::Write as _;
        let mut buf = std::mem::take(&mut self.1);
        buf.clear();
        // Writing into a String cannot fail.
        let _ = write!(buf, "{v}");
        self.text(&buf);
        self.1 = buf;
    }

    fn text(&mut self, s: &str) {
        self.0.update((s.len() as u64).to_le_bytes());
        self.0.update(s.as_bytes());
    }

    fn opt(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.0.update([1u8]);
                self.text(s);
            }
            None => self.0.update([0u8]),
        }
    }

    fn json<T: serde::Serialize + ?Sized>(&mut self, v: &T) {
        // Attribute maps are BTreeMaps: their JSON is canonical. Writing into a hasher
        // cannot fail; a value JSON cannot encode (never produced by the DSL) is hashed
        // as its error text, which is still deterministic.
        if let Err(e) = serde_json::to_writer(&mut *self, v) {
            self.text(&e.to_string());
        }
        self.0.update([0xffu8]);
    }

    fn finish(self) -> String {
        hex_lower(&self.0.finalize()[..HASH_HEX_LEN / 2])
    }
}

/// `bytes` in lower-case hex. `hex::encode` goes through a generic iterator of chars:
/// about 1% of a no-op converge of 1,000 components went to it (a few digests each).
fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// A small, fast, non-cryptographic hasher (FxHash's multiply-rotate) for maps keyed by
/// component ids: SipHash's DoS resistance buys nothing for ids from the user's own model.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
    fn finish(&self) -> u64 {
        // The multiply leaves the entropy in the high bits, but hashbrown picks buckets
        // with the low ones: rotate the high bits down (as rustc-hash 2 does). Without
        // it, 100,000 ids like `app12345` collided so often that probing (memcmp of
        // ids) was a quarter of the executor's time.
        self.0.rotate_left(26)
    }
}

/// A `HashMap` with [`FastHasher`].
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// The inputs of `component` known before anything runs: its own values (overrides and
/// defaults) plus the values of links to other services ([`LinkSource::External`]),
/// whose values were copied at staging time. Links within the service are resolved at run
/// time from the producers' outputs.
pub fn static_inputs(component: &ComponentInstance) -> Attributes {
    static_inputs_cow(component).into_owned()
}

/// [`static_inputs`] without a copy when there is no external link.
pub(crate) fn static_inputs_cow(component: &ComponentInstance) -> Cow<'_, Attributes> {
    if !component
        .links
        .iter()
        .any(|l| matches!(l.from, LinkSource::External { .. }))
    {
        return Cow::Borrowed(&component.inputs);
    }
    let mut inputs = component.inputs.clone();
    for link in &component.links {
        if let LinkSource::External { values, .. } = &link.from {
            for (path, to) in &link.mappings {
                if let Some(v) = lookup_path(values, path) {
                    inputs.insert(to.clone(), v.clone());
                }
            }
        }
    }
    Cow::Owned(inputs)
}

/// Follows `path` (`["host"]`, `["addresses", "0"]`) into `attrs`.
pub(crate) use dtk_model::expand::lookup_path;

/// The desired-state hash of a component: what its `create` does (the action's kind,
/// commands or provider resource), where (its node), with what (its static inputs, see
/// [`static_inputs`], the *names* of its secret inputs and the host's keyed digest of
/// their values), which definition (module and reference), and the digest of its
/// module's files when the host sets it. Equal hashes mean "nothing to do unless an input from a
/// producer changed". Retry and timeout settings are not part of it.
pub fn desired_hash(component: &ComponentInstance, static_inputs: &Attributes) -> String {
    let mut w = HashWriter::new("dtk-workflow desired v1");
    w.display(&component.module);
    w.display(&component.reference);
    w.text(component.id.as_str());
    w.opt(component.node.as_deref());
    match component.def.actions.get("create").map(|d| &d.kind) {
        Some(ActionKind::Commands(cmds)) => {
            w.text("commands");
            for step in cmds {
                // A RUN step hashes as its line, as before ADD steps existed.
                w.text(&step.text());
            }
        }
        Some(ActionKind::Provider { kind, resource }) => {
            w.text("provider");
            w.text(kind);
            w.text(resource);
        }
        Some(ActionKind::Unsupported { .. }) => w.text("unsupported"),
        None => w.text("no create action"),
    }
    w.json(static_inputs);
    for s in &component.secret_inputs {
        w.text(s);
    }
    // Only when set, so that a component without secrets hashes as it always did.
    if let Some(d) = &component.secret_digest {
        w.text("secret values");
        w.text(d);
    }
    // Likewise only when set: the files of the module its commands run in.
    if let Some(d) = &component.content_digest {
        w.text("module content");
        w.text(d);
    }
    w.finish()
}

/// The digest of what a component consumes at run time: the outputs (see
/// [`outputs_digest`]) of everything it depends on, in the order given, and the values
/// of its linked inputs (secret ones excepted). Its other inputs are static and covered
/// by its desired hash, so equal digests mean equal inputs; they also mean that no
/// dependency's outputs changed (a node re-created with a new address makes the
/// components on it run again). A conditional task runs when this differs from the
/// recorded one.
pub fn input_digest<'a>(
    dependency_outputs: impl IntoIterator<Item = (&'a ComponentId, Option<&'a str>)>,
    linked: impl IntoIterator<Item = (&'a str, Option<&'a Value>)>,
) -> String {
    let mut w = HashWriter::new("dtk-workflow inputs v2");
    for (id, digest) in dependency_outputs {
        w.text(id.as_str());
        w.opt(digest);
    }
    for (name, v) in linked {
        w.text(name);
        match v {
            Some(v) => w.json(v),
            None => w.text("absent"),
        }
    }
    w.finish()
}

/// The digest of a component's recorded outputs.
pub fn outputs_digest(outputs: &Attributes) -> String {
    let mut w = HashWriter::new("dtk-workflow outputs v1");
    w.json(outputs);
    w.finish()
}

/// A short stable digest of custom-action parameters, for idempotency keys.
pub(crate) fn params_digest(params: &Attributes) -> String {
    let mut w = HashWriter::new("dtk-workflow params v1");
    w.json(params);
    w.finish()
}

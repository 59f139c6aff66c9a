//! Tests of the web view through its router: pages, documents, secrets.

//! dtk-catalog: see ARCHITECTURE.md.

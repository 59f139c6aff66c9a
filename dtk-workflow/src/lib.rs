//! dtk-workflow: see ARCHITECTURE.md.

//! Unit tests of the pure parts: scripts, command lines, error classification and messages.

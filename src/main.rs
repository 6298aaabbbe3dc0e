//! Thin binary: the command table (`cli/`) parses flags, calls the library, renders its report.
//! It lives here, not in the library, so a change to a flag rebuilds only this binary;
//! `tests/architecture.rs` compiles the same files to check every flag against pipeline files.

mod cli;

fn main() {
    cli::main();
}

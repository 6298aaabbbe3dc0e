//! Thin binary: the command table lives in the library (`actprm::cli`), so tests can check it.

fn main() {
    actprm::cli::main();
}

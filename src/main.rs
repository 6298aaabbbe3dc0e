//! Thin binary: parse flags, run the command, print a clear error.

mod cli;

fn main() {
    let args = <cli::Cli as clap::Parser>::parse();
    if let Err(e) = cli::run(args) {
        eprintln!("actprm: error: {e}");
        std::process::exit(1);
    }
}

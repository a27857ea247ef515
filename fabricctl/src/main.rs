//! `fabricctl`: parses the command line and hands it to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    fabricctl::main_with(fabricctl::cli::Cli::parse())
}

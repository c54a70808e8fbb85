//! The `csc` binary: all of it is [`csc::cli::main`].

fn main() -> std::process::ExitCode {
    csc::cli::main()
}

fn main() -> std::process::ExitCode {
    csc::cli::main()
}

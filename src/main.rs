fn main() -> std::process::ExitCode {
    wxoa::cli::main()
}

// mimalloc: the webhook's many small, short-lived allocations (bodies, XML fields, replies) cost
// glibc malloc about 15% of the server's core under load; see README, Performance.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    wxoa::cli::main()
}

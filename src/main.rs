//! The `livewire` binary: everything lives in the library.
fn main() -> std::process::ExitCode {
    livewire::cli::main()
}

//! `outrider-model`: the fraud model's command line (generate, train, the
//! registry, serve, batch). See `outrider-model --help` and docs/model.md.

fn main() -> std::process::ExitCode {
    outrider_model::cli::main()
}

//! The atprov binary: parse the command line, run it, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = atprov::cli::Cli::parse();
    let level = match cli.verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    // One thread suffices for a single port and avoids cross-thread wake-ups on every
    // round trip; commands that drive many ports at once get a worker per core.
    let single = matches!(
        cli.command,
        atprov::cli::Command::Sim(_)
            | atprov::cli::Command::Send(_)
            | atprov::cli::Command::Console(_)
    );
    let built = if single {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    };
    let runtime = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("atprov: cannot start the async runtime: {e}");
            return ExitCode::from(atprov::exit::Code::Internal.number());
        }
    };
    match runtime.block_on(atprov::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("atprov: {}", f.message);
            ExitCode::from(f.code.number())
        }
    }
}

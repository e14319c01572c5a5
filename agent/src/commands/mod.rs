//! One module per subcommand; each turns parsed arguments into calls on the
//! library and an exit code.
mod damage;
mod export;
mod record;
mod replay;
mod report;
mod run;

use std::process::ExitCode;

use spanlet::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Record(args) => record::run(args),
        Command::Run(args) => {
            // First, while this is the only thread: every thread the agent
            // starts inherits it.
            if spanlet::kernel::caps::harden()?.securebits {
                tracing::info!("no_new_privs set, securebits locked");
            } else {
                tracing::info!("no_new_privs set; securebits unchanged (no CAP_SETPCAP)");
            }
            run::run(args)
        }
        Command::Report(args) => report::run(&args),
        Command::Export(args) => export::run(&args),
        Command::Replay(args) => replay::run(&args),
    }
}

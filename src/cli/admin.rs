//! `wxoa admin …`: access to the admin API and the console.

use crate::text::Failure;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum AdminCommand {
    /// Print the SHA-256 to put in [admin] tokens for a bearer token (read from stdin when not given).
    HashToken { token: Option<String> },
}

pub fn run(command: AdminCommand) -> Result<ExitCode, Failure> {
    let AdminCommand::HashToken { token } = command;
    let token = match token {
        Some(t) => t,
        None => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map_err(|e| e.to_string())?;
            line.trim().to_owned()
        }
    };
    if token.len() < 16 {
        return Err("a token should be at least 16 characters (e.g. openssl rand -hex 24)".into());
    }
    println!("{}", crate::admin::hash_token(&token));
    Ok(ExitCode::SUCCESS)
}

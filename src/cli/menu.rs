//! `wxoa menu …`: the custom menu file against WeChat's limits, and the live menu.

use super::{block_on, client};
use crate::config::Config;
use crate::text::Failure;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum MenuCommand {
    /// Validate the menu file against WeChat's limits, one line per problem.
    Check {
        #[arg(long, default_value = "config/menu.toml")]
        file: PathBuf,
    },
    /// Show the difference from the live menu and push the file's menu (and conditional menus).
    Sync {
        #[arg(long, default_value = "config/menu.toml")]
        file: PathBuf,
        /// Only show the difference.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the live menu.
    Show,
}

fn load(path: &Path) -> Result<Config, Failure> {
    Ok(Config::load(path).map_err(|e| e.to_string())?)
}

pub fn run(config_path: &Path, command: MenuCommand) -> Result<ExitCode, Failure> {
    use crate::menu::MenuFile;
    match command {
        MenuCommand::Check { file } => {
            // Checked as it would be for an https deployment.
            let menu = MenuFile::load(&file, "https://wx.example.com").map_err(|e| e.to_string())?;
            let problems = menu.check();
            for p in &problems {
                println!("{}: {p}", file.display());
            }
            if problems.is_empty() {
                println!(
                    "{}: ok ({} buttons, {} conditional menus)",
                    file.display(),
                    menu.button.len(),
                    menu.conditional.len()
                );
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::FAILURE)
            }
        }
        MenuCommand::Sync { file, dry_run } => {
            let config = load(config_path)?;
            let wanted = MenuFile::load(&file, &config.h5.public_url).map_err(|e| e.to_string())?;
            let problems = wanted.check();
            if !problems.is_empty() {
                for p in &problems {
                    println!("{}: {p}", file.display());
                }
                return Ok(ExitCode::FAILURE);
            }
            block_on(async {
                let (_, client) = client(&config).await?;
                let live = client.menu_get().await.map_err(|e| e.to_string())?;
                let changes = crate::menu::diff(&live, &wanted);
                if changes.is_empty() {
                    println!("the live menu already matches {}", file.display());
                    return Ok(ExitCode::SUCCESS);
                }
                for c in &changes {
                    println!("{c}");
                }
                if dry_run {
                    return Ok(ExitCode::SUCCESS);
                }
                // menu/create replaces the default menu and drops conditional menus.
                client.menu_create(&wanted.menu()).await.map_err(|e| e.to_string())?;
                for c in &wanted.conditional {
                    client.menu_add_conditional(c).await.map_err(|e| e.to_string())?;
                }
                println!("pushed {} ({} changes)", file.display(), changes.len());
                Ok(ExitCode::SUCCESS)
            })
        }
        MenuCommand::Show => {
            let config = load(config_path)?;
            block_on(async {
                let (_, client) = client(&config).await?;
                let live = client.menu_get().await.map_err(|e| e.to_string())?;
                println!("{}", serde_json::to_string_pretty(&live).map_err(|e| e.to_string())?);
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}

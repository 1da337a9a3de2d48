//! `wxoa stores …`: the brand's stores, their advisors, and their QR codes.

use super::{block_on, client, open_store, report_import};
use crate::config::Config;
use crate::text::Failure;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum StoresCommand {
    /// Load stores from CSV (id, name, city, address, latitude, longitude, opening_hours, phone[, active]); upserts by id.
    Import { file: PathBuf },
    /// Load beauty advisors from CSV (id, store_id, name); upserts by id.
    Advisors { file: PathBuf },
    /// Create the store's QR code (scene store_<id>) through the API and print its image URL.
    Qrcode {
        store: i64,
        /// A temporary code valid this many seconds (at most 30 days); permanent by default.
        #[arg(long)]
        expire_seconds: Option<u32>,
    },
}

pub fn run(config: Config, command: StoresCommand) -> Result<ExitCode, Failure> {
    let read = |file: &PathBuf| std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()));
    match command {
        StoresCommand::Import { file } => {
            let text = read(&file)?;
            block_on(async {
                let store = open_store(&config).await?;
                report_import("stores", crate::stores::import(&store, &text).await.map_err(|e| e.to_string())?)
            })
        }
        StoresCommand::Advisors { file } => {
            let text = read(&file)?;
            block_on(async {
                let store = open_store(&config).await?;
                report_import(
                    "advisors",
                    crate::stores::import_advisors(&store, &text).await.map_err(|e| e.to_string())?,
                )
            })
        }
        StoresCommand::Qrcode { store: id, expire_seconds } => block_on(async {
            let (store, client) = client(&config).await?;
            let shop =
                crate::stores::get(&store, id).await.map_err(|e| e.to_string())?.ok_or(format!("no store {id}"))?;
            let scene = crate::wechat::client::qrcode::Scene::Str(format!("store_{id}"));
            let qr = client.qrcode_create(&scene, expire_seconds).await.map_err(|e| e.to_string())?;
            println!("{} (scene store_{id}): {}", shop.name, qr.image_url());
            Ok(ExitCode::SUCCESS)
        }),
    }
}

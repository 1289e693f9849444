//! `custos init [DIR]`: a starter config, the Cedar schema to extend, and example policies.

use std::path::Path;

use crate::cli::InitArgs;
use crate::Failure;

/// The files `init` writes, relative to the target folder.
pub const FILES: [(&str, &str); 3] = [
    ("custos.toml", include_str!("../init_templates/custos.toml")),
    ("policies/readonly.cedar", include_str!("../init_templates/readonly.cedar")),
    ("custos.cedarschema", custos_policy::EMBEDDED_SCHEMA),
];

pub fn run(args: &InitArgs) -> Result<(), Failure> {
    write_files(&args.dir, args.force)?;
    println!("wrote a starter config to `{}`", args.dir.join("custos.toml").display());
    println!("next: custos policy check --config {}", args.dir.join("custos.toml").display());
    println!("then: custos run --config {} -- YOUR-MCP-SERVER ARGS…", args.dir.join("custos.toml").display());
    Ok(())
}

fn write_files(dir: &Path, force: bool) -> Result<(), Failure> {
    if !force {
        if let Some((name, _)) = FILES.iter().find(|(name, _)| dir.join(name).exists()) {
            return Err(Failure::usage(format!(
                "`{}` already exists; pass --force to overwrite",
                dir.join(name).display()
            )));
        }
    }
    for (name, text) in FILES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Failure::usage(format!("cannot create `{}`: {e}", parent.display())))?;
        }
        std::fs::write(&path, text).map_err(|e| Failure::usage(format!("cannot write `{}`: {e}", path.display())))?;
    }
    Ok(())
}

//! `custos policy check` and `custos policy explain`.

use custos_core::{ToolClass, ToolDescriptor, ToolRef};
use custos_store::Store;

use crate::cli::{ExplainArgs, PolicyCommand};
use crate::context;
use crate::Failure;

pub fn run(cmd: PolicyCommand) -> Result<(), Failure> {
    match cmd {
        PolicyCommand::Check { location } => {
            let config = context::load_config(&location)?;
            let engine = super::run::load_policy(&config).map_err(|f| Failure::check(f.message))?;
            println!(
                "ok: {} policies in {} files validate against the schema",
                engine.len(),
                config.policy.files.len()
            );
            Ok(())
        }
        PolicyCommand::Explain(args) => explain(&args),
    }
}

fn explain(args: &ExplainArgs) -> Result<(), Failure> {
    let config = context::load_config(&args.location)?;
    let engine = super::run::load_policy(&config)?;
    let agent = config.agent(&args.agent).ok_or_else(|| Failure::usage(format!("unknown agent `{}`", args.agent)))?;
    let tool: ToolRef = args.tool.parse().map_err(Failure::usage)?;
    let arguments: serde_json::Value =
        serde_json::from_str(&args.args).map_err(|e| Failure::usage(format!("--args is not JSON: {e}")))?;
    if !arguments.is_object() {
        return Err(Failure::usage("--args must be a JSON object"));
    }
    let descriptor = known_descriptor(&config, &tool);
    let class = args.class.as_deref().map(str::parse::<ToolClass>).transpose().map_err(Failure::usage)?;
    let (class, explanation) =
        custos_console::explain::what_if(&config, &engine, agent, &tool, class, descriptor.as_ref(), &arguments);
    if args.json {
        let out = serde_json::json!({ "tool": tool, "class": class, "explanation": explanation });
        println!("{out}");
    } else {
        println!("{tool} (class {class}) for agent `{}`", agent.id);
        print!("{explanation}");
    }
    Ok(())
}

/// The tool's last recorded descriptor, if the audit database has one.
fn known_descriptor(config: &custos_config::Config, tool: &ToolRef) -> Option<ToolDescriptor> {
    let db = context::database(config);
    let store = custos_store::SqlStore::open_read_only(&db).ok()?;
    let record = store.tools().ok()?.into_iter().find(|t| &t.tool == tool)?;
    ToolDescriptor::from_listing(tool.server(), record.descriptor)
}

//! The server's prompts.

use rmcp::{
    handler::server::wrapper::Parameters,
    model::{PromptMessage, Role},
    prompt, prompt_router, schemars,
};
use serde::Deserialize;

use crate::SampleServer;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct GreetArgs {
    /// Who to greet.
    pub(crate) name: String,
}

#[prompt_router(vis = "pub(crate)")]
impl SampleServer {
    /// One user message asking the model to say hello to `name`.
    #[prompt(name = "greet")]
    async fn greet(&self, Parameters(args): Parameters<GreetArgs>) -> Vec<PromptMessage> {
        vec![PromptMessage::new_text(Role::User, format!("Say hello to {}", args.name))]
    }
}

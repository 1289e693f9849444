//! A `tools/list` result: recorded whole, filtered by configuration, otherwise untouched.
//!
//! Only the `result.tools` array is rebuilt when something is hidden; every other member of the
//! response (and of `result`, such as `nextCursor` or vendor fields) is written back as the same
//! raw JSON text.

use indexmap::IndexMap;
use serde_json::value::RawValue;

use custos_core::ToolDescriptor;

/// The tools of one `tools/list` response.
#[derive(Debug)]
pub struct ToolsListing {
    envelope: IndexMap<String, Box<RawValue>>,
    result: IndexMap<String, Box<RawValue>>,
    /// Each listed tool as raw text, with its parsed descriptor when it had a name.
    pub tools: Vec<(Box<RawValue>, Option<ToolDescriptor>)>,
}

impl ToolsListing {
    /// Reads a successful `tools/list` response. `None` when it does not have the expected shape;
    /// the caller then forwards it unchanged (there is nothing to filter).
    pub fn parse(server: &str, raw: &[u8]) -> Option<Self> {
        let envelope: IndexMap<String, Box<RawValue>> = serde_json::from_slice(raw).ok()?;
        let result: IndexMap<String, Box<RawValue>> = serde_json::from_str(envelope.get("result")?.get()).ok()?;
        let list: Vec<Box<RawValue>> = serde_json::from_str(result.get("tools")?.get()).ok()?;
        let tools = list
            .into_iter()
            .map(|raw| {
                let descriptor =
                    serde_json::from_str(raw.get()).ok().and_then(|v| ToolDescriptor::from_listing(server, v));
                (raw, descriptor)
            })
            .collect();
        Some(Self { envelope, result, tools })
    }

    pub fn descriptors(&self) -> Vec<ToolDescriptor> {
        self.tools.iter().filter_map(|(_, d)| d.clone()).collect()
    }

    /// The response with only the tools `keep` accepts, or `None` when all are kept (forward the
    /// original bytes).
    pub fn filtered(mut self, mut keep: impl FnMut(&ToolDescriptor) -> bool) -> Option<Vec<u8>> {
        let before = self.tools.len();
        // A tool without a name cannot be called or decided on; it is kept as the server sent it.
        self.tools.retain(|(_, d)| d.as_ref().is_none_or(&mut keep));
        if self.tools.len() == before {
            return None;
        }
        let kept: Vec<&RawValue> = self.tools.iter().map(|(raw, _)| raw.as_ref()).collect();
        let tools = serde_json::value::to_raw_value(&kept).ok()?;
        self.result.insert("tools".to_owned(), tools);
        let result = serde_json::value::to_raw_value(&self.result).ok()?;
        self.envelope.insert("result".to_owned(), result);
        serde_json::to_vec(&self.envelope).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{"jsonrpc":"2.0","id":7.0,"result":{"tools":[{"name":"a","x-v":1},{"name":"b"},{"nameless":true}],"nextCursor":"c2"},"x-top":[1,2]}"#;

    #[test]
    fn keeps_everything_else_byte_for_byte() {
        let l = ToolsListing::parse("s", LIST.as_bytes()).unwrap();
        assert_eq!(l.descriptors().len(), 2);
        let out = String::from_utf8(l.filtered(|d| d.tool.name() != "b").unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"jsonrpc":"2.0","id":7.0,"result":{"tools":[{"name":"a","x-v":1},{"nameless":true}],"nextCursor":"c2"},"x-top":[1,2]}"#
        );
    }

    #[test]
    fn nothing_hidden_means_forward_the_original() {
        let l = ToolsListing::parse("s", LIST.as_bytes()).unwrap();
        assert!(l.filtered(|_| true).is_none());
        assert!(ToolsListing::parse("s", br#"{"jsonrpc":"2.0","id":1,"result":{}}"#).is_none());
    }
}

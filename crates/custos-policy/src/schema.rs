//! The Cedar schema: where it comes from, parsing it, and checking it can describe a call.

use std::path::PathBuf;

use cedar_policy::Schema;

use crate::error::{first_offset, io_reason, one_line, PolicyError, SourcePos};

/// The schema shipped with Custos (`schema/custos.cedarschema`). Deployments that need more
/// argument attributes copy it and name the copy in their config.
pub const EMBEDDED_SCHEMA: &str = include_str!("../schema/custos.cedarschema");

/// The name errors in the embedded schema are reported under.
pub const EMBEDDED_SCHEMA_NAME: &str = "custos.cedarschema";

/// Which schema policies are validated against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SchemaSource {
    /// [`EMBEDDED_SCHEMA`].
    #[default]
    Embedded,
    /// A schema file in Cedar's schema syntax.
    File(PathBuf),
}

impl SchemaSource {
    /// The schema's name for error messages and its text.
    pub(crate) fn read(&self) -> Result<(String, String), PolicyError> {
        match self {
            Self::Embedded => Ok((EMBEDDED_SCHEMA_NAME.to_owned(), EMBEDDED_SCHEMA.to_owned())),
            Self::File(path) => {
                let name = path.display().to_string();
                let text = std::fs::read_to_string(path)
                    .map_err(|e| PolicyError::ReadSchema { path: name.clone(), reason: io_reason(&e) })?;
                Ok((name, text))
            }
        }
    }
}

/// Parses schema `text`, reporting problems at `name:line:column`. Warnings (such as a
/// declaration shadowing a built-in type) are not errors.
pub(crate) fn parse(name: &str, text: &str) -> Result<Schema, PolicyError> {
    match Schema::from_cedarschema_str(text) {
        Ok((schema, _warnings)) => Ok(schema),
        Err(err) => {
            let at = first_offset(&err)
                .map(|offset| SourcePos::locate(name, text, offset))
                .unwrap_or_else(|| SourcePos::start_of(name));
            Err(PolicyError::Schema { at, message: one_line(&err) })
        }
    }
}

//! Between the store's values ([`Arg`], [`Value`]) and PostgreSQL's types.
//!
//! PostgreSQL infers each parameter's type from the statement; the store's arguments are
//! only integers, text, blobs and nulls, so each is bound to the types it can honestly
//! become, and refused (with a clear error, never a silent conversion) otherwise.

use std::error::Error;

use bytes::BytesMut;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

use crate::sql::{Arg, DbError, Row, Value};

/// An [`Arg`] owned, to cross to the connection's thread.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Param {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<&Arg<'_>> for Param {
    fn from(arg: &Arg<'_>) -> Self {
        match *arg {
            Arg::Null => Param::Null,
            Arg::Int(n) => Param::Int(n),
            Arg::Text(s) => Param::Text(s.to_owned()),
            Arg::Blob(b) => Param::Blob(b.to_vec()),
        }
    }
}

type BoxError = Box<dyn Error + Sync + Send>;

fn is_text(ty: &Type) -> bool {
    matches!(*ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME)
}

impl ToSql for Param {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(n) => match *ty {
                Type::INT8 => n.to_sql(ty, out),
                // The value itself stays out of the message: it may be a secret's length, a time.
                Type::INT4 => {
                    i32::try_from(*n).map_err(|_| "an integer out of range for an int4 parameter")?.to_sql(ty, out)
                }
                Type::INT2 => {
                    i16::try_from(*n).map_err(|_| "an integer out of range for an int2 parameter")?.to_sql(ty, out)
                }
                _ if is_text(ty) => n.to_string().as_str().to_sql(ty, out),
                _ => Err(format!("cannot bind an integer to a parameter of type {ty}").into()),
            },
            Param::Text(s) if is_text(ty) => s.as_str().to_sql(ty, out),
            Param::Text(_) => Err(format!("cannot bind text to a parameter of type {ty}").into()),
            Param::Blob(b) if *ty == Type::BYTEA => b.as_slice().to_sql(ty, out),
            Param::Blob(_) => Err(format!("cannot bind a blob to a parameter of type {ty}").into()),
        }
    }

    /// Every type: `to_sql` decides per value, so a null binds anywhere and a mismatch says
    /// which value and type disagree.
    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(match *ty {
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::BOOL => Value::Int(bool::from_sql(ty, raw)?.into()),
            Type::BYTEA => Value::Blob(raw.to_vec()),
            _ if is_text(ty) => Value::Text(<&str>::from_sql(ty, raw)?.to_owned()),
            // Never written by the store: only a tampered or foreign row holds one.
            _ => Value::Other,
        })
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Value::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// One row's cells, by column type.
pub(super) fn row(row: &tokio_postgres::Row) -> Result<Row, DbError> {
    (0..row.len()).map(|i| row.try_get::<_, Value>(i).map_err(|e| db_error(&e))).collect::<Result<_, _>>().map(Row)
}

/// The driver's error as the store sees it. A server error keeps its severity, message and
/// SQLSTATE but not its detail, which quotes the row's values (`Key (id)=(…) already exists`).
pub(super) fn db_error(e: &tokio_postgres::Error) -> DbError {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            DbError {
                message: format!("postgres: {}: {} (SQLSTATE {code})", db.severity(), db.message()),
                // Class 23: integrity constraint violations (unique, foreign key, not null, check).
                constraint: code.starts_with("23"),
            }
        }
        None => {
            // The driver's own message names the step ("error serializing parameter 0"); the
            // causes below it say what went wrong, so they are kept.
            let mut message = format!("postgres: {e}");
            let mut cause = e.source();
            while let Some(c) = cause {
                message.push_str(": ");
                message.push_str(&c.to_string());
                cause = c.source();
            }
            DbError::new(message)
        }
    }
}

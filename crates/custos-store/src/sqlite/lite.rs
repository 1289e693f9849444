//! [`Sql`] on one SQLite connection.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params_from_iter, Connection, ErrorCode, ToSql};

use crate::sql::{Arg, DbError, Row, Sql, Value};

/// A borrowed SQLite connection (or transaction) as [`Sql`]. Statements are prepared once per
/// connection and cached.
pub(crate) struct Lite<'c>(pub(crate) &'c Connection);

impl ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Arg::Null => ValueRef::Null,
            Arg::Int(n) => ValueRef::Integer(n),
            Arg::Text(s) => ValueRef::Text(s.as_bytes()),
            Arg::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

pub(crate) fn db_error(e: &rusqlite::Error) -> DbError {
    let constraint = e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation);
    DbError { message: e.to_string(), constraint }
}

fn value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => Value::Int(n),
        ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
            Ok(s) => Value::Text(s.to_owned()),
            Err(_) => Value::Other,
        },
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        ValueRef::Real(_) => Value::Other,
    }
}

impl Sql for Lite<'_> {
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, DbError> {
        let mut stmt = self.0.prepare_cached(sql).map_err(|e| db_error(&e))?;
        let n = stmt.execute(params_from_iter(args)).map_err(|e| db_error(&e))?;
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, DbError> {
        let mut stmt = self.0.prepare_cached(sql).map_err(|e| db_error(&e))?;
        let width = stmt.column_count();
        let mut rows = stmt.query(params_from_iter(args)).map_err(|e| db_error(&e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| db_error(&e))? {
            let mut cells = Vec::with_capacity(width);
            for i in 0..width {
                cells.push(value(row.get_ref(i).map_err(|e| db_error(&e))?));
            }
            out.push(Row(cells));
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.0.execute_batch(sql).map_err(|e| db_error(&e))
    }

    fn table_exists(&mut self, name: &str) -> Result<bool, DbError> {
        let found = self.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", &[Arg::Text(name)])?;
        Ok(!found.is_empty())
    }

    fn insertion_order(&self) -> &'static str {
        "rowid"
    }

    fn transaction_lost(&mut self) -> bool {
        self.0.is_autocommit()
    }
}

//! The statements the store runs, independent of the database behind them.
//!
//! Every projection (agents, approvals, credentials, pins, the inventory) and the chain's own
//! appends are written once, against [`Sql`]: SQLite (`sqlite.rs`) and PostgreSQL (`pg.rs`)
//! each implement it for one connection. Statements are written in the SQL both accept:
//! numbered placeholders `?1` (or bare `?`, numbered in order), `ON CONFLICT … DO NOTHING`
//! rather than `INSERT OR IGNORE`, `CASE` rather than two-argument `MAX`, and an upsert's
//! target table named when its columns are read (`tools.last_seen_ms`). PostgreSQL rewrites
//! the placeholders to `$1`.

use std::fmt;

/// A value bound to a statement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Arg<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl From<i64> for Arg<'_> {
    fn from(n: i64) -> Self {
        Arg::Int(n)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Self {
        Arg::Text(s)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(s: &'a String) -> Self {
        Arg::Text(s)
    }
}

impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(b: &'a [u8]) -> Self {
        Arg::Blob(b)
    }
}

impl<'a> From<&'a Vec<u8>> for Arg<'a> {
    fn from(b: &'a Vec<u8>) -> Self {
        Arg::Blob(b)
    }
}

impl<'a, T: Into<Arg<'a>>> From<Option<T>> for Arg<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Arg::Null, Into::into)
    }
}

/// Binds each value: `args![a, b, c]` is `[Arg::from(a), Arg::from(b), Arg::from(c)]`.
macro_rules! args {
    ($($v:expr),* $(,)?) => { [$($crate::sql::Arg::from($v)),*] };
}
pub(crate) use args;

/// A value read from a row.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
    /// A type the store never writes (a real, say): only a tampered row holds one.
    Other,
}

/// One row of a result, its cells in the order of the statement's columns.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Row(pub(crate) Vec<Value>);

impl Row {
    fn cell(&self, i: usize) -> Result<&Value, DbError> {
        self.0.get(i).ok_or_else(|| DbError::new(format!("no column {i}")))
    }

    fn mismatch(i: usize, want: &str, got: &Value) -> DbError {
        let got = match got {
            Value::Null => "null",
            Value::Int(_) => "an integer",
            Value::Text(_) => "text",
            Value::Blob(_) => "a blob",
            Value::Other => "another type",
        };
        DbError::new(format!("column {i} holds {got}, expected {want}"))
    }

    pub(crate) fn int(&self, i: usize) -> Result<i64, DbError> {
        match self.cell(i)? {
            Value::Int(n) => Ok(*n),
            other => Err(Self::mismatch(i, "an integer", other)),
        }
    }

    pub(crate) fn opt_int(&self, i: usize) -> Result<Option<i64>, DbError> {
        match self.cell(i)? {
            Value::Null => Ok(None),
            Value::Int(n) => Ok(Some(*n)),
            other => Err(Self::mismatch(i, "an integer or null", other)),
        }
    }

    pub(crate) fn text(&self, i: usize) -> Result<String, DbError> {
        match self.cell(i)? {
            Value::Text(s) => Ok(s.clone()),
            other => Err(Self::mismatch(i, "text", other)),
        }
    }

    pub(crate) fn opt_text(&self, i: usize) -> Result<Option<String>, DbError> {
        match self.cell(i)? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s.clone())),
            other => Err(Self::mismatch(i, "text or null", other)),
        }
    }

    pub(crate) fn blob(&self, i: usize) -> Result<Vec<u8>, DbError> {
        match self.cell(i)? {
            Value::Blob(b) => Ok(b.clone()),
            other => Err(Self::mismatch(i, "a blob", other)),
        }
    }
}

/// Why a statement failed, as the driver said it (no values of the statement in it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DbError {
    pub(crate) message: String,
    /// A uniqueness or key constraint refused the statement.
    pub(crate) constraint: bool,
}

impl DbError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        DbError { message: message.into(), constraint: false }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// One connection to the store's database, inside or outside a transaction its owner opened.
pub(crate) trait Sql {
    /// Runs one statement; returns the number of rows it changed.
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, DbError>;

    /// Runs one query and reads every row.
    fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, DbError>;

    /// Runs one query and reads its first row, if any.
    fn query_opt(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// Runs statements without arguments, separated by `;` (schema, savepoints).
    fn batch(&mut self, sql: &str) -> Result<(), DbError>;

    /// Whether table `name` exists (a database opened read-only may predate a table).
    fn table_exists(&mut self, name: &str) -> Result<bool, DbError>;

    /// A column (or expression) that orders a table's rows as they were inserted, to break
    /// ties of a time column: SQLite's `rowid`, a column of PostgreSQL's schema.
    fn insertion_order(&self) -> &'static str;

    /// Whether the database dropped the transaction this connection was in (SQLite does on
    /// some I/O errors): going on would run the rest outside any transaction.
    fn transaction_lost(&mut self) -> bool {
        false
    }
}

/// Rewrites `?N` and bare `?` placeholders as PostgreSQL's `$N` (bare ones numbered in order).
/// The store's statements hold no `?` or `$` inside string literals.
pub(crate) fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 0_u32;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '?' {
            out.push(c);
            continue;
        }
        out.push('$');
        if chars.peek().is_some_and(char::is_ascii_digit) {
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                out.push(d);
            }
        } else {
            next += 1;
            out.push_str(&next.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(
            numbered_placeholders("SELECT a FROM t WHERE b = ?1 AND c = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = $12"
        );
        assert_eq!(numbered_placeholders("x = ? AND y = ? LIMIT ?"), "x = $1 AND y = $2 LIMIT $3");
        assert_eq!(numbered_placeholders("no placeholders"), "no placeholders");
    }

    #[test]
    fn rows_read_typed_cells_and_say_what_they_found() {
        let row = Row(vec![Value::Int(3), Value::Null, Value::Text("x".into()), Value::Blob(vec![1])]);
        assert_eq!(row.int(0), Ok(3));
        assert_eq!(row.opt_int(1), Ok(None));
        assert_eq!(row.opt_text(1), Ok(None));
        assert_eq!(row.text(2).as_deref(), Ok("x"));
        assert_eq!(row.blob(3), Ok(vec![1]));
        assert_eq!(row.int(2).unwrap_err().message, "column 2 holds text, expected an integer");
        assert!(row.int(9).is_err());
    }

    #[test]
    fn options_bind_null_or_their_value() {
        let none: Option<&str> = None;
        assert_eq!(args![3_i64, "a", none, Some(4_i64)], [Arg::Int(3), Arg::Text("a"), Arg::Null, Arg::Int(4)]);
    }
}

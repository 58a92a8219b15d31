//! SQLite source: the datasource's file opened (read-only for a read-only datasource, never
//! created), one deferred transaction so that the upper bound and the rows come from one
//! snapshot, and the whole extract on a blocking thread — reading and writing — with an
//! interrupt handle for stop orders and timeouts.

use std::borrow::Cow;

use rusqlite::{types::ValueRef, OpenFlags};

use super::{
    quote_ident,
    sink::Sink,
    value::{Column, Kind, Value},
    Extract, Job, SqlError,
};

/// The file type of a declared column type, by SQLite's affinity rules (and BOOL).
fn kind_of(decl: Option<&str>) -> Kind {
    let Some(decl) = decl else {
        return Kind::Text;
    };
    let d = decl.to_ascii_uppercase();
    if d.contains("INT") {
        Kind::Int64
    } else if d.contains("BOOL") {
        Kind::Bool
    } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
        Kind::Double
    } else if d.contains("BLOB") {
        Kind::Bytes
    } else {
        Kind::Text
    }
}

fn value<'a>(v: ValueRef<'a>, kind: Kind) -> Result<Value<'a>, String> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) if kind == Kind::Bool => Value::Bool(i != 0),
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Double(f),
        ValueRef::Text(t) => Value::Text(match std::str::from_utf8(t) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => Cow::Owned(String::from_utf8_lossy(t).into_owned()),
        }),
        ValueRef::Blob(b) => Value::Bytes(b),
    })
}

/// A watermark as SQLite compares it: a number for numeric columns, text otherwise.
fn bound(text: &str, kind: Kind) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match kind {
        Kind::Int64 | Kind::Bool => text
            .parse()
            .map_or_else(|_| V::Text(text.into()), V::Integer),
        Kind::Double => text.parse().map_or_else(|_| V::Text(text.into()), V::Real),
        _ => V::Text(text.to_owned()),
    }
}

struct Spec {
    path: std::path::PathBuf,
    read_only: bool,
    sql: String,
    values: Vec<String>,
    incremental: Option<super::Incremental>,
}

pub async fn extract(job: &Job<'_>) -> Result<Extract, SqlError> {
    let path = job
        .ds
        .path
        .clone()
        .ok_or_else(|| job.db("no database file"))?;
    let spec = Spec {
        path,
        read_only: job.ds.read_only,
        sql: job.parsed.render(|i, _| format!("?{}", i + 1)),
        values: job.param_values().into_iter().map(str::to_owned).collect(),
        incremental: job.incremental.clone(),
    };
    let sink_args = (
        job.dir.to_owned(),
        job.stem.clone(),
        job.format,
        job.max_rows,
    );
    let (handle_tx, handle_rx) = tokio::sync::oneshot::channel();
    let name = job.ds.name.clone();
    let ds = job.ds.clone();
    let work = tokio::task::spawn_blocking(move || {
        run(spec, sink_args, handle_tx).map_err(|e| match e {
            Fail::Db(m) => SqlError::Database {
                datasource: name,
                message: ds.redact(&m),
            },
            Fail::Other(e) => e,
        })
    });
    let interrupt = handle_rx.await.ok();
    tokio::pin!(work);
    let result = tokio::select! {
        r = &mut work => r,
        e = job.stopped() => {
            if let Some(i) = &interrupt {
                i.interrupt();
            }
            // The thread sees the interrupt (or finishes) and removes its partial files.
            let _ = work.await;
            return Err(e);
        }
    };
    result.map_err(|e| SqlError::Internal(format!("the sqlite extract stopped: {e}")))?
}

enum Fail {
    Db(String),
    Other(SqlError),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Fail {
        Fail::Db(e.to_string())
    }
}

impl From<super::format::WriteError> for Fail {
    fn from(e: super::format::WriteError) -> Fail {
        Fail::Other(SqlError::Write(e))
    }
}

fn run(
    spec: Spec,
    (dir, stem, format, max_rows): (std::path::PathBuf, String, super::format::Format, u64),
    handle_tx: tokio::sync::oneshot::Sender<rusqlite::InterruptHandle>,
) -> Result<Extract, Fail> {
    let flags = if spec.read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = rusqlite::Connection::open_with_flags(&spec.path, flags)
        .map_err(|e| Fail::Db(format!("cannot open the database file: {e}")))?;
    let _ = handle_tx.send(conn.get_interrupt_handle());
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.execute_batch("BEGIN")?;
    let stmt = conn.prepare(&spec.sql)?;
    let mut columns: Vec<Column> = stmt
        .columns()
        .iter()
        .map(|c| Column {
            name: c.name().to_owned(),
            source_type: c.decl_type().unwrap_or("").to_owned(),
            kind: kind_of(c.decl_type()),
            nullable: true,
        })
        .collect();
    drop(stmt);
    let mut sql = spec.sql.clone();
    let mut binds: Vec<rusqlite::types::Value> = spec
        .values
        .iter()
        .map(|v| rusqlite::types::Value::Text(v.clone()))
        .collect();
    let mut upper = None;
    if let Some(inc) = &spec.incremental {
        let index = columns
            .iter()
            .position(|c| c.name == inc.column)
            .ok_or_else(|| {
                Fail::Other(SqlError::Task(format!(
                    "incremental column {:?} is not a column of the query's result ({})",
                    inc.column,
                    columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            })?;
        let kind = columns[index].kind;
        let col = quote_ident(&inc.column);
        upper = match &inc.until {
            Some(u) => Some(u.clone()),
            None => {
                let max_sql = format!("SELECT max(q.{col}) FROM ({sql}) q");
                let mut stmt = conn.prepare(&max_sql)?;
                let text: Option<String> =
                    stmt.query_row(rusqlite::params_from_iter(binds.iter()), |r| {
                        Ok(match r.get_ref(0)? {
                            ValueRef::Null => None,
                            ValueRef::Integer(i) => Some(i.to_string()),
                            ValueRef::Real(f) => Some(f.to_string()),
                            ValueRef::Text(t) | ValueRef::Blob(t) => {
                                Some(String::from_utf8_lossy(t).into_owned())
                            }
                        })
                    })?;
                text
            }
        };
        let mut conds = Vec::new();
        if let Some(after) = &inc.after {
            binds.push(bound(after, kind));
            conds.push(format!("q.{col} > ?{}", binds.len()));
        }
        match &upper {
            Some(u) => {
                binds.push(bound(u, kind));
                conds.push(format!("q.{col} <= ?{}", binds.len()));
            }
            None => conds.push("0".to_owned()),
        }
        sql = format!("SELECT * FROM ({sql}) q WHERE {}", conds.join(" AND "));
    }
    let mut stmt = conn.prepare(&sql)?;
    // `SELECT *` over the query keeps its columns; refresh the declared types it reports.
    for (c, s) in columns.iter_mut().zip(stmt.columns()) {
        if c.source_type.is_empty() {
            c.source_type = s.decl_type().unwrap_or("").to_owned();
        }
    }
    let mut sink = Sink::new(&dir, &stem, format, max_rows, columns.clone());
    let kinds: Vec<Kind> = columns.iter().map(|c| c.kind).collect();
    let mut rows = stmt.query(rusqlite::params_from_iter(binds.iter()))?;
    while let Some(row) = rows.next()? {
        let mut values: Vec<Value<'_>> = Vec::with_capacity(kinds.len());
        for (i, kind) in kinds.iter().enumerate() {
            let v = value(row.get_ref(i)?, *kind).map_err(Fail::Db)?;
            values.push(v);
        }
        sink.write_row(&values)?;
    }
    drop(rows);
    drop(stmt);
    conn.execute_batch("COMMIT")?;
    let written = sink.finish()?;
    Ok(Extract {
        written,
        columns,
        upper,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinities() {
        assert_eq!(kind_of(Some("BIGINT")), Kind::Int64);
        assert_eq!(kind_of(Some("boolean")), Kind::Bool);
        assert_eq!(kind_of(Some("DOUBLE PRECISION")), Kind::Double);
        assert_eq!(kind_of(Some("blob")), Kind::Bytes);
        assert_eq!(kind_of(Some("TIMESTAMP")), Kind::Text);
        assert_eq!(kind_of(None), Kind::Text);
    }
}

//! MySQL/MariaDB source: one connection, the session in UTC, one consistent-snapshot
//! transaction (read-only for a read-only datasource), the query prepared so that parameters
//! are bound with the binary protocol and rows stream typed, handed to the writer thread in
//! batches.

use std::borrow::Cow;

use mysql_async::{
    consts::{ColumnFlags, ColumnType},
    prelude::Queryable,
    Conn, Opts, OptsBuilder, Params, Row,
};

use super::{
    pipe::Pipe,
    sink::Sink,
    value::{days_from_civil, Column, Kind, Value},
    Extract, Job, SqlError,
};

/// Rows per batch handed to the writer thread.
const BATCH_ROWS: usize = 2048;
/// The `binary` character set: bytes, not text.
const BINARY_CHARSET: u16 = 63;

fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn my_message(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("ERROR {} ({}): {}", s.code, s.state, s.message),
        other => other.to_string(),
    }
}

/// The column's file type and a source type name such as `DECIMAL(12,2)` or `BIGINT UNSIGNED`.
fn describe(c: &mysql_async::Column) -> (Kind, String) {
    use ColumnType as T;
    let unsigned = c.flags().contains(ColumnFlags::UNSIGNED_FLAG);
    let binary = c.character_set() == BINARY_CHARSET;
    let decimals = c.decimals();
    let (kind, name) = match c.column_type() {
        T::MYSQL_TYPE_TINY => (Kind::Int32, "TINYINT"),
        T::MYSQL_TYPE_SHORT => (Kind::Int32, "SMALLINT"),
        T::MYSQL_TYPE_INT24 => (Kind::Int32, "MEDIUMINT"),
        T::MYSQL_TYPE_YEAR => (Kind::Int32, "YEAR"),
        T::MYSQL_TYPE_LONG if unsigned => (Kind::Int64, "INT"),
        T::MYSQL_TYPE_LONG => (Kind::Int32, "INT"),
        T::MYSQL_TYPE_LONGLONG if unsigned => (
            Kind::Decimal {
                precision: 20,
                scale: 0,
            },
            "BIGINT",
        ),
        T::MYSQL_TYPE_LONGLONG => (Kind::Int64, "BIGINT"),
        T::MYSQL_TYPE_DECIMAL | T::MYSQL_TYPE_NEWDECIMAL => {
            let sign = u32::from(!unsigned);
            let point = u32::from(decimals > 0);
            let precision = c.column_length().saturating_sub(sign + point);
            let name = format!("DECIMAL({precision},{decimals})");
            let kind = if (1..=38).contains(&precision) && u32::from(decimals) <= precision {
                Kind::Decimal {
                    precision: precision as u8,
                    scale: decimals,
                }
            } else {
                Kind::Text
            };
            return (kind, name);
        }
        T::MYSQL_TYPE_FLOAT => (Kind::Float, "FLOAT"),
        T::MYSQL_TYPE_DOUBLE => (Kind::Double, "DOUBLE"),
        T::MYSQL_TYPE_DATE | T::MYSQL_TYPE_NEWDATE => (Kind::Date, "DATE"),
        T::MYSQL_TYPE_DATETIME | T::MYSQL_TYPE_DATETIME2 => (Kind::Timestamp, "DATETIME"),
        T::MYSQL_TYPE_TIMESTAMP | T::MYSQL_TYPE_TIMESTAMP2 => (Kind::TimestampTz, "TIMESTAMP"),
        T::MYSQL_TYPE_TIME | T::MYSQL_TYPE_TIME2 => (Kind::Text, "TIME"),
        T::MYSQL_TYPE_JSON => (Kind::Json, "JSON"),
        T::MYSQL_TYPE_BIT => (Kind::Bytes, "BIT"),
        T::MYSQL_TYPE_GEOMETRY => (Kind::Bytes, "GEOMETRY"),
        T::MYSQL_TYPE_ENUM => (Kind::Text, "ENUM"),
        T::MYSQL_TYPE_SET => (Kind::Text, "SET"),
        T::MYSQL_TYPE_TINY_BLOB
        | T::MYSQL_TYPE_MEDIUM_BLOB
        | T::MYSQL_TYPE_LONG_BLOB
        | T::MYSQL_TYPE_BLOB => {
            if binary {
                (Kind::Bytes, "BLOB")
            } else {
                (Kind::Text, "TEXT")
            }
        }
        T::MYSQL_TYPE_VARCHAR | T::MYSQL_TYPE_VAR_STRING => {
            if binary {
                (Kind::Bytes, "VARBINARY")
            } else {
                (Kind::Text, "VARCHAR")
            }
        }
        T::MYSQL_TYPE_STRING => {
            if binary {
                (Kind::Bytes, "BINARY")
            } else {
                (Kind::Text, "CHAR")
            }
        }
        T::MYSQL_TYPE_NULL => (Kind::Text, "NULL"),
        _ => (Kind::Text, "UNKNOWN"),
    };
    let mut name = name.to_owned();
    if unsigned && matches!(kind, Kind::Int32 | Kind::Int64 | Kind::Decimal { .. }) {
        name.push_str(" UNSIGNED");
    }
    (kind, name)
}

/// The `CAST(? AS …)` target that compares a watermark as the column's type.
fn cast_of(kind: Kind, unsigned: bool) -> Option<String> {
    Some(match kind {
        Kind::Int32 | Kind::Int64 if unsigned => "UNSIGNED".into(),
        Kind::Int32 | Kind::Int64 => "SIGNED".into(),
        Kind::Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
        Kind::Float | Kind::Double => "DOUBLE".into(),
        Kind::Date => "DATE".into(),
        Kind::Timestamp | Kind::TimestampTz => "DATETIME(6)".into(),
        _ => return None,
    })
}

fn text(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// One value as the writer takes it.
fn value(v: &mysql_async::Value, kind: Kind) -> Value<'_> {
    use mysql_async::Value as V;
    match v {
        V::NULL => Value::Null,
        V::Int(i) => Value::Int(*i),
        V::UInt(u) => Value::UInt(*u),
        V::Float(f) => Value::Float(*f),
        V::Double(f) => Value::Double(*f),
        V::Bytes(b) => match kind {
            Kind::Bytes => Value::Bytes(b),
            Kind::Decimal { .. } => Value::Decimal(text(b)),
            Kind::Json => Value::Json(text(b)),
            _ => Value::Text(text(b)),
        },
        V::Date(y, m, d, h, mi, s, us) => {
            if *m == 0 || *d == 0 {
                // MySQL's zero dates have no calendar value: kept as the server writes them.
                return Value::Text(Cow::Owned(if kind == Kind::Date {
                    format!("{y:04}-{m:02}-{d:02}")
                } else {
                    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}")
                }));
            }
            let days = days_from_civil(i64::from(*y), u32::from(*m), u32::from(*d));
            let micros = days * 86_400_000_000
                + (i64::from(*h) * 3600 + i64::from(*mi) * 60 + i64::from(*s)) * 1_000_000
                + i64::from(*us);
            match kind {
                Kind::Date => Value::Date(days as i32),
                Kind::TimestampTz => Value::TimestampTz(micros),
                _ => Value::Timestamp(micros),
            }
        }
        V::Time(negative, days, h, mi, s, us) => {
            let hours = u64::from(*days) * 24 + u64::from(*h);
            let sign = if *negative { "-" } else { "" };
            let mut t = format!("{sign}{hours:02}:{mi:02}:{s:02}");
            if *us != 0 {
                t.push_str(&format!(".{us:06}"));
            }
            Value::Text(Cow::Owned(t))
        }
    }
}

pub async fn extract(job: &Job<'_>) -> Result<Extract, SqlError> {
    let url = &job.ds.url.0;
    let url = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("mariadb") => {
            format!("mysql://{rest}")
        }
        _ => url.clone(),
    };
    let opts = Opts::from_url(&url).map_err(|e| job.db(format!("invalid url: {e}")))?;
    let mut builder = OptsBuilder::from_opts(opts);
    if let Some(password) = &job.ds.password {
        builder = builder.pass(Some(password.0.clone()));
    }
    let mut conn = tokio::select! {
        r = Conn::new(builder) => r.map_err(|e| {
            let message = format!("cannot connect: {}", my_message(&e));
            // 1045 ER_ACCESS_DENIED_ERROR, 1698 ER_ACCESS_DENIED_NO_PASSWORD_ERROR.
            match &e {
                mysql_async::Error::Server(s) if matches!(s.code, 1045 | 1698) => job.refused(message),
                _ => job.db(message),
            }
        })?,
        e = job.stopped() => return Err(e),
    };
    let planned = tokio::select! {
        r = plan(&mut conn, job) => r?,
        e = job.stopped() => return Err(e),
    };
    let (sql, binds, columns, upper) = planned;
    let kinds: Vec<Kind> = columns.iter().map(|c| c.kind).collect();
    let sink = Sink::new(
        job.dir,
        &job.stem,
        job.format,
        job.max_rows,
        columns.clone(),
    );
    let pipe: Pipe<Vec<Row>> = Pipe::spawn(move |mut batches| {
        let mut sink = sink;
        while let Some(batch) = batches.recv()? {
            let mut values: Vec<Value<'_>> = Vec::with_capacity(kinds.len());
            for row in &batch {
                values.clear();
                for (i, kind) in kinds.iter().enumerate() {
                    values.push(Row::as_ref(row, i).map_or(Value::Null, |v| value(v, *kind)));
                }
                sink.write_row(&values)?;
            }
        }
        Ok(sink.finish()?)
    });
    let streamed = tokio::select! {
        r = stream(&mut conn, job, &sql, binds, &pipe) => r,
        e = job.stopped() => Err(e),
    };
    match streamed {
        Ok(()) => {
            let written = pipe.finish().await?;
            let _ = conn.disconnect().await;
            Ok(Extract {
                written,
                columns,
                upper,
            })
        }
        Err(e) => Err(pipe.abandon().await.unwrap_or(e)),
    }
}

async fn stream(
    conn: &mut Conn,
    job: &Job<'_>,
    sql: &str,
    binds: Vec<mysql_async::Value>,
    pipe: &Pipe<Vec<Row>>,
) -> Result<(), SqlError> {
    let db = |e: mysql_async::Error| job.db(my_message(&e));
    {
        let mut result = conn
            .exec_iter(sql, Params::Positional(binds))
            .await
            .map_err(db)?;
        let mut batch = Vec::with_capacity(BATCH_ROWS);
        while let Some(row) = result.next().await.map_err(db)? {
            batch.push(row);
            if batch.len() >= BATCH_ROWS
                && !pipe
                    .send(std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(BATCH_ROWS),
                    ))
                    .await
            {
                return Err(SqlError::Interrupted);
            }
        }
        if !batch.is_empty() && !pipe.send(batch).await {
            return Err(SqlError::Interrupted);
        }
    }
    conn.query_drop("COMMIT").await.map_err(db)?;
    Ok(())
}

type Planned = (String, Vec<mysql_async::Value>, Vec<Column>, Option<String>);

async fn plan(conn: &mut Conn, job: &Job<'_>) -> Result<Planned, SqlError> {
    let db = |e: mysql_async::Error| job.db(my_message(&e));
    let read_only = if job.ds.read_only { ", READ ONLY" } else { "" };
    conn.query_drop("SET time_zone = '+00:00'")
        .await
        .map_err(db)?;
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .await
        .map_err(db)?;
    conn.query_drop(format!(
        "START TRANSACTION WITH CONSISTENT SNAPSHOT{read_only}"
    ))
    .await
    .map_err(db)?;
    let query = job.parsed.render(|_, _| "?".to_owned());
    let mut binds: Vec<mysql_async::Value> = job
        .parsed
        .occurrences()
        .into_iter()
        .map(|n| mysql_async::Value::from(job.params.get(n).map_or("", String::as_str)))
        .collect();
    let stmt = conn.prep(&query).await.map_err(db)?;
    let meta: Vec<(Kind, String, bool, String)> = stmt
        .columns()
        .iter()
        .map(|c| {
            let (kind, source) = describe(c);
            (
                kind,
                source,
                c.flags().contains(ColumnFlags::UNSIGNED_FLAG),
                c.name_str().into_owned(),
            )
        })
        .collect();
    let columns: Vec<Column> = stmt
        .columns()
        .iter()
        .zip(&meta)
        .map(|(c, (kind, source, _, name))| Column {
            name: name.clone(),
            source_type: source.clone(),
            kind: *kind,
            nullable: !c.flags().contains(ColumnFlags::NOT_NULL_FLAG),
        })
        .collect();
    conn.close(stmt).await.map_err(db)?;
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let mut sql = query.clone();
    let mut upper = None;
    if let Some(index) = job.incremental_index(&names)? {
        let inc = job.incremental.as_ref().expect("incremental");
        let col = quote(&inc.column);
        let (kind, _, unsigned, _) = &meta[index];
        let cast = cast_of(*kind, *unsigned);
        let placeholder = match &cast {
            Some(c) => format!("CAST(? AS {c})"),
            None => "?".to_owned(),
        };
        upper = match &inc.until {
            Some(u) => Some(u.clone()),
            None => {
                let max: Option<(Option<String>,)> = conn
                    .exec_first(
                        format!("SELECT CAST(MAX(q.{col}) AS CHAR) FROM ({query}) q"),
                        Params::Positional(binds.clone()),
                    )
                    .await
                    .map_err(db)?;
                max.and_then(|(m,)| m)
            }
        };
        let mut conds = Vec::new();
        if let Some(after) = &inc.after {
            conds.push(format!("q.{col} > {placeholder}"));
            binds.push(mysql_async::Value::from(after.as_str()));
        }
        match &upper {
            Some(u) => {
                conds.push(format!("q.{col} <= {placeholder}"));
                binds.push(mysql_async::Value::from(u.as_str()));
            }
            None => conds.push("FALSE".to_owned()),
        }
        sql = format!("SELECT * FROM ({query}) q WHERE {}", conds.join(" AND "));
    }
    Ok((sql, binds, columns, upper))
}

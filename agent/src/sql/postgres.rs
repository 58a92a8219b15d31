//! PostgreSQL source: one connection, one `REPEATABLE READ` transaction (read-only for a
//! read-only datasource), rows out through `COPY (query) TO STDOUT` — CSV passed through as
//! the server writes it, everything else as binary tuples decoded here.
//!
//! COPY takes no bind parameters, so parameters are bound as data into transaction-local
//! settings (`set_config('ferry.p1', $1, true)`) and the query reads them back with
//! `current_setting('ferry.p1')::<type>`, the type PostgreSQL inferred when the query was
//! prepared with `$n` placeholders: the value is never part of the SQL text.

pub mod binary;
pub mod csv;

use std::collections::HashMap;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio_postgres::{
    types::{Kind as PgKind, Type},
    Client, NoTls,
};

use self::{binary::Decode, csv::RowScanner};
use super::{
    format::Format,
    pipe::Pipe,
    quote_ident,
    sink::Sink,
    value::{Column, Kind},
    Extract, Job, SqlError,
};

/// Bytes of COPY data per batch handed to the writer thread.
const BATCH_BYTES: usize = 512 << 10;

/// A PostgreSQL error in full: severity, message, detail and hint.
fn pg_message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut m = format!("{}: {}", db.severity(), db.message());
        if let Some(detail) = db.detail() {
            m.push_str(&format!(" (detail: {detail})"));
        }
        if let Some(hint) = db.hint() {
            m.push_str(&format!(" (hint: {hint})"));
        }
        return m;
    }
    let mut m = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        m.push_str(&format!(": {s}"));
        source = s.source();
    }
    m
}

/// A type as SQL can name it in a cast.
fn type_sql(ty: &Type) -> String {
    format!("{}.{}", quote_ident(ty.schema()), quote_ident(ty.name()))
}

/// How a column is read: natively, or through an SQL expression over it.
fn decode_of(ty: &Type) -> Option<Decode> {
    Some(match *ty {
        Type::BOOL => Decode::Bool,
        Type::INT2 => Decode::Int2,
        Type::INT4 => Decode::Int4,
        Type::INT8 => Decode::Int8,
        Type::OID => Decode::Oid,
        Type::FLOAT4 => Decode::Float4,
        Type::FLOAT8 => Decode::Float8,
        Type::NUMERIC => Decode::Numeric,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::CHAR => Decode::Text,
        Type::BYTEA => Decode::Bytea,
        Type::DATE => Decode::Date,
        Type::TIME => Decode::Time,
        Type::TIMESTAMP => Decode::Timestamp,
        Type::TIMESTAMPTZ => Decode::TimestampTz,
        Type::UUID => Decode::Uuid,
        Type::JSON => Decode::Json,
        Type::JSONB => Decode::Jsonb,
        _ => return None,
    })
}

/// Precision and scale of a `numeric(p,s)` type modifier.
fn numeric_typmod(typmod: i32) -> Option<(u8, u8)> {
    if typmod < 4 {
        return None;
    }
    let m = typmod - 4;
    let precision = (m >> 16) & 0xffff;
    let scale = m & 0x7ff;
    // Negative scales (PostgreSQL 15) and precisions over 38 are written as text.
    if !(1..=38).contains(&precision) || scale > precision || (m & 0x400) != 0 {
        return None;
    }
    Some((precision as u8, scale as u8))
}

/// The plan of one extract, fixed inside the transaction.
struct Plan {
    copy_sql: String,
    columns: Vec<Column>,
    /// `None`: CSV passed through.
    decoders: Option<Vec<Decode>>,
    upper: Option<String>,
}

pub async fn extract(job: &Job<'_>) -> Result<Extract, SqlError> {
    let mut config: tokio_postgres::Config = job
        .ds
        .url
        .0
        .parse()
        .map_err(|e| job.db(format!("invalid url: {e}")))?;
    if let Some(password) = &job.ds.password {
        config.password(password.0.as_bytes());
    }
    if config.get_application_name().is_none() {
        config.application_name("ferry-agent");
    }
    let (client, connection) = tokio::select! {
        r = config.connect(NoTls) => r.map_err(|e| {
            let message = format!("cannot connect: {}", pg_message(&e));
            // 28P01 invalid_password, 28000 invalid_authorization_specification.
            match e.code().map(|c| c.code()) {
                Some("28P01" | "28000") => job.refused(message),
                _ => job.db(message),
            }
        })?,
        e = job.stopped() => return Err(e),
    };
    tokio::pin!(connection);
    let closed = |r: Result<(), tokio_postgres::Error>| match r {
        Ok(()) => job.db("the server closed the connection"),
        Err(e) => job.db(format!("connection lost: {}", pg_message(&e))),
    };
    let plan = tokio::select! {
        r = plan(&client, job) => r?,
        r = &mut connection => return Err(closed(r)),
        e = job.stopped() => return Err(e),
    };
    let Plan {
        copy_sql,
        columns,
        decoders,
        upper,
    } = plan;
    let sink = Sink::new(
        job.dir,
        &job.stem,
        job.format,
        job.max_rows,
        columns.clone(),
    );
    let pipe: Pipe<Vec<Bytes>> =
        Pipe::spawn(move |mut batches: super::pipe::Batches<Vec<Bytes>>| {
            let mut sink = sink;
            match decoders {
                None => {
                    let mut scanner = RowScanner::default();
                    while let Some(batch) = batches.recv()? {
                        for chunk in &batch {
                            scanner.write(&mut sink, chunk.as_ref())?;
                        }
                    }
                }
                Some(decoders) => {
                    let mut parser = binary::Parser::new(decoders);
                    while let Some(batch) = batches.recv()? {
                        for chunk in &batch {
                            parser.feed(chunk.as_ref(), &mut |row| sink.write_row(row))?;
                        }
                    }
                    if !parser.done() {
                        return Err(SqlError::Interrupted);
                    }
                }
            }
            Ok(sink.finish()?)
        });
    let streamed = tokio::select! {
        r = stream(&client, job, &copy_sql, &pipe) => r,
        r = &mut connection => Err(closed(r)),
        e = job.stopped() => Err(e),
    };
    match streamed {
        Ok(()) => {
            let written = pipe.finish().await?;
            Ok(Extract {
                written,
                columns,
                upper,
            })
        }
        Err(e) => Err(pipe.abandon().await.unwrap_or(e)),
    }
}

/// Runs the COPY, hands its data over in batches, and commits.
async fn stream(
    client: &Client,
    job: &Job<'_>,
    copy_sql: &str,
    pipe: &Pipe<Vec<Bytes>>,
) -> Result<(), SqlError> {
    let db = |e: tokio_postgres::Error| job.db(pg_message(&e));
    let copy = client.copy_out(copy_sql).await.map_err(db)?;
    futures_util::pin_mut!(copy);
    let mut batch = Vec::new();
    let mut size = 0;
    while let Some(chunk) = copy.next().await {
        let chunk = chunk.map_err(db)?;
        size += chunk.len();
        batch.push(chunk);
        if size >= BATCH_BYTES {
            size = 0;
            if !pipe.send(std::mem::take(&mut batch)).await {
                return Err(SqlError::Interrupted);
            }
        }
    }
    if !batch.is_empty() && !pipe.send(batch).await {
        return Err(SqlError::Interrupted);
    }
    client.batch_execute("COMMIT").await.map_err(db)?;
    Ok(())
}

/// Opens the transaction, binds the parameters, fixes the upper bound and builds the COPY.
async fn plan(client: &Client, job: &Job<'_>) -> Result<Plan, SqlError> {
    let db = |e: tokio_postgres::Error| job.db(pg_message(&e));
    let read_only = if job.ds.read_only { " READ ONLY" } else { "" };
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ{read_only}; \
             SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; \
             SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 1"
        ))
        .await
        .map_err(db)?;
    let placeholders = job.parsed.render(|i, _| format!("${}", i + 1));
    let stmt = client.prepare(&placeholders).await.map_err(db)?;
    let values = job.param_values();
    if !values.is_empty() {
        let sets: Vec<String> = (1..=values.len())
            .map(|i| format!("set_config('ferry.p{i}', ${i}, true)"))
            .collect();
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
            .iter()
            .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        client
            .execute(&format!("SELECT {}", sets.join(", ")), &params)
            .await
            .map_err(db)?;
    }
    let types: Vec<String> = stmt.params().iter().map(type_sql).collect();
    let inner = job.parsed.render(|i, _| {
        format!(
            "(current_setting('ferry.p{}')::{})",
            i + 1,
            types.get(i).map_or("text", String::as_str)
        )
    });
    let cols = stmt.columns();
    let names: Vec<&str> = cols.iter().map(|c| c.name()).collect();
    let mut query = inner.clone();
    let mut upper = None;
    if let Some(index) = job.incremental_index(&names)? {
        let inc = job.incremental.as_ref().expect("incremental");
        let col = quote_ident(&inc.column);
        let ty = type_sql(cols[index].type_());
        upper = match &inc.until {
            Some(until) => Some(until.clone()),
            None => client
                .query_one(&format!("SELECT max(q.{col})::text FROM ({inner}) q"), &[])
                .await
                .map_err(db)?
                .get::<_, Option<String>>(0),
        };
        let mut set = vec![];
        let mut bind: Vec<&str> = vec![];
        let mut conds = vec![];
        if let Some(after) = &inc.after {
            set.push("set_config('ferry.after', $1, true)".to_owned());
            bind.push(after);
            conds.push(format!("q.{col} > current_setting('ferry.after')::{ty}"));
        }
        match &upper {
            Some(u) => {
                set.push(format!(
                    "set_config('ferry.upper', ${}, true)",
                    bind.len() + 1
                ));
                bind.push(u);
                conds.push(format!("q.{col} <= current_setting('ferry.upper')::{ty}"));
            }
            // No rows at all: an empty extract with the query's columns.
            None => conds.push("false".to_owned()),
        }
        if !set.is_empty() {
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = bind
                .iter()
                .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            client
                .execute(&format!("SELECT {}", set.join(", ")), &params)
                .await
                .map_err(db)?;
        }
        query = format!("SELECT * FROM ({inner}) q WHERE {}", conds.join(" AND "));
    }

    // Schema: source types and NOT NULL from the catalog for plain table columns.
    let tables: Vec<u32> = cols.iter().filter_map(|c| c.table_oid()).collect();
    let mut not_null: HashMap<(u32, i16), bool> = HashMap::new();
    if !tables.is_empty() {
        for row in client
            .query(
                "SELECT attrelid, attnum, attnotnull FROM pg_catalog.pg_attribute \
                 WHERE attrelid = ANY($1) AND attnum > 0",
                &[&tables],
            )
            .await
            .map_err(db)?
        {
            not_null.insert((row.get(0), row.get(1)), row.get(2));
        }
    }
    let oids: Vec<u32> = cols.iter().map(|c| c.type_().oid()).collect();
    let mods: Vec<i32> = cols.iter().map(|c| c.type_modifier()).collect();
    let source_types: Vec<String> = client
        .query(
            "SELECT pg_catalog.format_type(o, m) FROM unnest($1::oid[], $2::int4[]) \
             WITH ORDINALITY AS x(o, m, i) ORDER BY i",
            &[&oids, &mods],
        )
        .await
        .map_err(db)?
        .iter()
        .map(|r| r.get(0))
        .collect();

    let csv = matches!(job.format, Format::Csv { .. });
    let mut columns = Vec::new();
    let mut decoders = Vec::new();
    let mut exprs = Vec::new();
    let mut rewritten = false;
    for (i, c) in cols.iter().enumerate() {
        let q = format!("q2.{}", quote_ident(c.name()));
        let ty = c.type_();
        let decode = decode_of(ty);
        let (decode, expr) = if csv {
            // The server's CSV text, except bytes: base64 like every other source.
            match decode {
                Some(Decode::Bytea) => (
                    Decode::Text,
                    Some(format!("translate(encode({q}, 'base64'), E'\\n', '')")),
                ),
                _ => (decode.unwrap_or(Decode::Text), None),
            }
        } else {
            match decode {
                Some(d) => (d, None),
                None if matches!(ty.kind(), PgKind::Array(_)) => {
                    (Decode::Json, Some(format!("to_json({q})")))
                }
                None => (Decode::Text, Some(format!("{q}::text"))),
            }
        };
        let typmod = numeric_typmod(c.type_modifier());
        let decode = match (decode, typmod) {
            (Decode::Numeric, Some((_, scale))) => Decode::NumericScaled(scale),
            (d, _) => d,
        };
        let kind = match (decode, ty) {
            (Decode::Numeric | Decode::NumericScaled(_), _) => match typmod {
                Some((precision, scale)) => Kind::Decimal { precision, scale },
                None => Kind::Text,
            },
            (Decode::Text, _) if decode_of(ty) == Some(Decode::Bytea) => Kind::Bytes,
            (Decode::Json, _) if matches!(ty.kind(), PgKind::Array(_)) => Kind::Json,
            (d, _) => d.kind(),
        };
        let nullable = match (c.table_oid(), c.column_id()) {
            (Some(t), Some(a)) => !not_null.get(&(t, a)).copied().unwrap_or(false),
            _ => true,
        };
        columns.push(Column {
            name: c.name().to_owned(),
            source_type: source_types
                .get(i)
                .cloned()
                .unwrap_or_else(|| ty.name().to_owned()),
            kind,
            nullable,
        });
        rewritten |= expr.is_some();
        exprs.push(expr.unwrap_or(q));
        decoders.push(decode);
    }
    if rewritten {
        query = format!("SELECT {} FROM ({query}) q2", exprs.join(", "));
    }
    let copy_sql = if csv {
        format!("COPY ({query}) TO STDOUT WITH (FORMAT csv)")
    } else {
        format!("COPY ({query}) TO STDOUT WITH (FORMAT binary)")
    };
    Ok(Plan {
        copy_sql,
        columns,
        decoders: (!csv).then_some(decoders),
        upper,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typmods() {
        // numeric(12,2): ((12 << 16) | 2) + 4
        assert_eq!(numeric_typmod((12 << 16 | 2) + 4), Some((12, 2)));
        assert_eq!(numeric_typmod(-1), None);
        assert_eq!(numeric_typmod((40 << 16) + 4), None);
        assert_eq!(
            type_sql(&Type::TIMESTAMPTZ),
            "\"pg_catalog\".\"timestamptz\""
        );
    }
}

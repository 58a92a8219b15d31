//! Opening the SQLite store: its directory made, a truncated file refused, the pragmas set, the
//! schema migrated, then the writer thread and the readers started.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::{backend, migrate, writer, ReaderPool, SqliteStore, StoreError, STATEMENT_CACHE};

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date
    /// (`migrate`); refuses a database whose schema is newer than this binary.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::backend(format!("creating {}: {e}", dir.display())))?;
        }
        refuse_truncated(path)?;
        let path = path.to_path_buf();
        let conn = tokio::task::spawn_blocking({
            let path = path.clone();
            move || -> Result<Connection, StoreError> {
                let mut conn = Connection::open(&path)
                    .map_err(|e| StoreError::backend(format!("opening {}: {e}", path.display())))?;
                conn.execute_batch(
                    "PRAGMA journal_mode = WAL;
                     PRAGMA synchronous = NORMAL;
                     PRAGMA busy_timeout = 10000;
                     PRAGMA cache_size = -65536;
                     PRAGMA temp_store = MEMORY;",
                )
                .map_err(backend)?;
                migrate::apply(&mut conn, migrate::wall_clock())?;
                conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                Ok(conn)
            }
        })
        .await
        .map_err(|e| StoreError::backend(e.to_string()))??;
        let (writer, _thread) = writer::Writer::start(conn, &path)
            .map_err(|e| StoreError::backend(format!("starting the writer thread: {e}")))?;
        Ok(Self {
            writer,
            readers: Arc::new(ReaderPool::new(path)),
            now: Mutex::new(None),
        })
    }
}

/// An empty database file beside a write-ahead log that holds data is a store whose file was
/// truncated or replaced: SQLite would open it as a new, empty store and the jobs in the log
/// would be silently gone. Refused, saying what to do.
fn refuse_truncated(path: &Path) -> Result<(), StoreError> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal = std::path::PathBuf::from(wal);
    let (Ok(db), Ok(log)) = (std::fs::metadata(path), std::fs::metadata(&wal)) else {
        return Ok(());
    };
    if db.len() == 0 && log.len() > 0 {
        return Err(StoreError::backend(format!(
            "the store file {} is empty but its write-ahead log {} holds {} bytes: the file was truncated or replaced; restore it from a backup, or move both away to start an empty store on purpose",
            path.display(),
            wal.display(),
            log.len()
        )));
    }
    Ok(())
}

//! The slow disk's operations: each FUSE request done on the backing directory by path (the
//! inode table of `super::State`) or by open handle, the slow ones after the latency.

use std::{
    ffi::OsStr,
    fs::{File, Metadata, OpenOptions},
    os::unix::fs::{
        DirBuilderExt, DirEntryExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt,
    },
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};
use nix::libc;

use super::State;

/// How long the kernel may keep an entry or attributes: every change goes through this mount.
const TTL: Duration = Duration::from_secs(1);

/// The filesystem: paths under `backing`, the knob, the inodes and open handles.
pub(super) struct Passthrough {
    pub(super) backing: PathBuf,
    pub(super) latency_ms: Arc<AtomicU64>,
    pub(super) state: Arc<Mutex<State>>,
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn kind(meta: &Metadata) -> FileType {
    let t = meta.file_type();
    if t.is_dir() {
        FileType::Directory
    } else if t.is_symlink() {
        FileType::Symlink
    } else {
        FileType::RegularFile
    }
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::new(secs.max(0) as u64, nsecs.clamp(0, 999_999_999) as u32)
}

fn attr(ino: u64, m: &Metadata) -> FileAttr {
    FileAttr {
        ino,
        size: m.size(),
        blocks: m.blocks(),
        atime: time(m.atime(), m.atime_nsec()),
        mtime: time(m.mtime(), m.mtime_nsec()),
        ctime: time(m.ctime(), m.ctime_nsec()),
        crtime: time(m.ctime(), m.ctime_nsec()),
        kind: kind(m),
        perm: (m.mode() & 0o7777) as u16,
        nlink: m.nlink() as u32,
        uid: m.uid(),
        gid: m.gid(),
        rdev: m.rdev() as u32,
        blksize: m.blksize() as u32,
        flags: 0,
    }
}

/// Access mode and the flags that matter on the backing file (not the creation ones).
fn open_options(flags: i32) -> OpenOptions {
    let mut o = OpenOptions::new();
    match flags & libc::O_ACCMODE {
        libc::O_WRONLY => o.write(true),
        libc::O_RDWR => o.read(true).write(true),
        _ => o.read(true),
    };
    o.custom_flags(flags & (libc::O_APPEND | libc::O_TRUNC | libc::O_SYNC | libc::O_DSYNC));
    o
}

impl Passthrough {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("slow disk state poisoned")
    }

    fn real(&self, rel: &Path) -> PathBuf {
        self.backing.join(rel)
    }

    fn child(&self, parent: u64, name: &OsStr) -> Option<PathBuf> {
        self.lock().path(parent).map(|p| p.join(name))
    }

    /// Runs `op` now when the disk is fast, else on a thread of its own after the latency
    /// (±50 %).
    fn slow(&self, op: impl FnOnce() + Send + 'static) {
        let ms = self.latency_ms.load(Ordering::Relaxed);
        if ms == 0 {
            return op();
        }
        let wait = Duration::from_millis(ms / 2 + fastrand::u64(0..=ms));
        std::thread::spawn(move || {
            std::thread::sleep(wait);
            op();
        });
    }

    /// Replies with the entry of `rel` (counted as a lookup).
    fn entry(state: &Mutex<State>, backing: &Path, rel: PathBuf, reply: ReplyEntry) {
        match std::fs::symlink_metadata(backing.join(&rel)) {
            Ok(m) => {
                let ino = state.lock().expect("poisoned").remember(rel);
                reply.entry(&TTL, &attr(ino, &m), 0);
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn file(&self, fh: u64) -> Option<Arc<File>> {
        self.lock().files.get(&fh).cloned()
    }
}

macro_rules! or_reply {
    ($reply:ident, $e:expr) => {
        match $e {
            Some(v) => v,
            None => return $reply.error(libc::ENOENT),
        }
    };
}

impl Filesystem for Passthrough {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let rel = or_reply!(reply, self.child(parent, name));
        Self::entry(&self.state, &self.backing, rel, reply);
    }

    fn forget(&mut self, _req: &Request<'_>, ino: u64, nlookup: u64) {
        self.lock().forget(ino, nlookup);
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, fh: Option<u64>, reply: ReplyAttr) {
        let meta = match fh.and_then(|fh| self.file(fh)) {
            Some(file) => file.metadata(),
            None => {
                let rel = or_reply!(reply, self.lock().path(ino));
                std::fs::symlink_metadata(self.real(&rel))
            }
        };
        match meta {
            Ok(m) => reply.attr(&TTL, &attr(ino, &m)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let rel = or_reply!(reply, self.lock().path(ino));
        let real = self.real(&rel);
        let file = fh.and_then(|fh| self.file(fh));
        let change = move || -> std::io::Result<Metadata> {
            if let Some(mode) = mode {
                std::fs::set_permissions(&real, std::fs::Permissions::from_mode(mode & 0o7777))?;
            }
            if let Some(size) = size {
                match &file {
                    Some(f) => f.set_len(size)?,
                    None => OpenOptions::new().write(true).open(&real)?.set_len(size)?,
                }
            }
            if let Some(mtime) = mtime {
                let at = match mtime {
                    TimeOrNow::SpecificTime(t) => t,
                    TimeOrNow::Now => SystemTime::now(),
                };
                File::options()
                    .write(true)
                    .open(&real)
                    .or_else(|_| File::open(&real))?
                    .set_modified(at)?;
            }
            std::fs::symlink_metadata(&real)
        };
        let slow = size.is_some();
        let done = move || match change() {
            Ok(m) => reply.attr(&TTL, &attr(ino, &m)),
            Err(e) => reply.error(errno(&e)),
        };
        if slow {
            self.slow(done)
        } else {
            done()
        }
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let rel = or_reply!(reply, self.child(parent, name));
        let (state, backing) = (self.state.clone(), self.backing.clone());
        self.slow(move || {
            match std::fs::DirBuilder::new()
                .mode(mode & !umask & 0o7777)
                .create(backing.join(&rel))
            {
                Ok(()) => Self::entry(&state, &backing, rel, reply),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let rel = or_reply!(reply, self.child(parent, name));
        let (state, real) = (self.state.clone(), self.real(&rel));
        self.slow(move || match std::fs::remove_file(real) {
            Ok(()) => {
                state.lock().expect("poisoned").inodes.remove(&rel);
                reply.ok()
            }
            Err(e) => reply.error(errno(&e)),
        });
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let rel = or_reply!(reply, self.child(parent, name));
        let (state, real) = (self.state.clone(), self.real(&rel));
        self.slow(move || match std::fs::remove_dir(real) {
            Ok(()) => {
                state.lock().expect("poisoned").inodes.remove(&rel);
                reply.ok()
            }
            Err(e) => reply.error(errno(&e)),
        });
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        let from = or_reply!(reply, self.child(parent, name));
        let to = or_reply!(reply, self.child(newparent, newname));
        if flags & !libc::RENAME_NOREPLACE != 0 {
            return reply.error(libc::EINVAL);
        }
        let (state, backing) = (self.state.clone(), self.backing.clone());
        self.slow(move || {
            let mut state = state.lock().expect("poisoned");
            let (f, t) = (backing.join(&from), backing.join(&to));
            if flags & libc::RENAME_NOREPLACE != 0 && std::fs::symlink_metadata(&t).is_ok() {
                return reply.error(libc::EEXIST);
            }
            match std::fs::rename(f, t) {
                Ok(()) => {
                    state.moved(&from, &to);
                    reply.ok()
                }
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let rel = or_reply!(reply, self.lock().path(ino));
        let truncates = flags & libc::O_TRUNC != 0;
        let (state, real) = (self.state.clone(), self.real(&rel));
        let done = move || match open_options(flags).open(real) {
            Ok(file) => {
                let mut state = state.lock().expect("poisoned");
                let fh = state.fh();
                state.files.insert(fh, Arc::new(file));
                reply.opened(fh, 0)
            }
            Err(e) => reply.error(errno(&e)),
        };
        if truncates {
            self.slow(done)
        } else {
            done()
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let file = or_reply!(reply, self.file(fh));
        self.slow(move || {
            let mut buf = vec![0; size as usize];
            let mut got = 0;
            while got < buf.len() {
                match file.read_at(&mut buf[got..], offset as u64 + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return reply.error(errno(&e)),
                }
            }
            reply.data(&buf[..got])
        });
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let file = or_reply!(reply, self.file(fh));
        let data = data.to_vec();
        self.slow(move || match file.write_all_at(&data, offset as u64) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(&e)),
        });
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lo: u64, reply: ReplyEmpty) {
        reply.ok();
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.lock().files.remove(&fh);
        reply.ok();
    }

    fn fsync(&mut self, _req: &Request<'_>, _ino: u64, fh: u64, datasync: bool, reply: ReplyEmpty) {
        let file = or_reply!(reply, self.file(fh));
        self.slow(move || {
            let synced = if datasync {
                file.sync_data()
            } else {
                file.sync_all()
            };
            match synced {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        let rel = or_reply!(reply, self.lock().path(ino));
        let mut listing = vec![
            (ino, FileType::Directory, ".".into()),
            (ino, FileType::Directory, "..".into()),
        ];
        let read = std::fs::read_dir(self.real(&rel)).and_then(|entries| {
            for entry in entries {
                let entry = entry?;
                let kind = match entry.file_type()? {
                    t if t.is_dir() => FileType::Directory,
                    t if t.is_symlink() => FileType::Symlink,
                    _ => FileType::RegularFile,
                };
                // The backing inode: a listing's numbers are only shown, never used.
                listing.push((entry.ino().max(2), kind, entry.file_name()));
            }
            Ok(())
        });
        if let Err(e) = read {
            return reply.error(errno(&e));
        }
        let mut state = self.lock();
        let fh = state.fh();
        state.dirs.insert(fh, listing);
        reply.opened(fh, 0);
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let state = self.lock();
        let listing = or_reply!(reply, state.dirs.get(&fh));
        for (i, (ino, kind, name)) in listing.iter().enumerate().skip(offset.max(0) as usize) {
            if reply.add(*ino, i as i64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&mut self, _req: &Request<'_>, _ino: u64, fh: u64, _f: i32, reply: ReplyEmpty) {
        self.lock().dirs.remove(&fh);
        reply.ok();
    }

    fn fsyncdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _ds: bool, reply: ReplyEmpty) {
        let rel = or_reply!(reply, self.lock().path(ino));
        let real = self.real(&rel);
        self.slow(move || match File::open(real).and_then(|d| d.sync_all()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        });
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        match nix::sys::statvfs::statvfs(&self.backing) {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                s.name_max() as u32,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(e as i32),
        }
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let rel = or_reply!(reply, self.child(parent, name));
        let (state, backing) = (self.state.clone(), self.backing.clone());
        self.slow(move || {
            let mut options = open_options(flags);
            options.create(true).mode(mode & !umask & 0o7777);
            if flags & libc::O_EXCL != 0 {
                options.create_new(true);
            }
            let made = options.open(backing.join(&rel)).and_then(|f| {
                let m = f.metadata()?;
                Ok((f, m))
            });
            match made {
                Ok((file, m)) => {
                    let mut state = state.lock().expect("poisoned");
                    let ino = state.remember(rel);
                    let fh = state.fh();
                    state.files.insert(fh, Arc::new(file));
                    reply.created(&TTL, &attr(ino, &m), 0, fh, 0)
                }
                Err(e) => reply.error(errno(&e)),
            }
        });
    }
}

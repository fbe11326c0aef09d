//! dbopen(3): the Berkeley DB 1.85 interface that makemap(8) writes and
//! the `db` table backend reads, for hash and btree files.
//!
//! OpenBSD has `dbopen` in libc. Linux has no libc version: OpenSMTPD's
//! portable build (Debian's package among them) uses the 1.85
//! compatibility entry point of Berkeley DB 5.3, `__db185_open` in
//! `libdb-5.3.so`, and so do we. Both hand back the same `DB` structure
//! of function pointers (`<db.h>` on OpenBSD, `<db_185.h>` with Berkeley
//! DB 5.3), and the flags and types have the same values.
//!
//! The file formats differ between the two: OpenBSD writes the original
//! 1.85 hash and btree layouts, Berkeley DB 5.3 its own (`file(1)` says
//! "Berkeley DB (Hash, version 9)"). A database is read by what wrote
//! it: a map built by OpenSMTPD on the same system is read by us and
//! the other way round, but a map does not travel between OpenBSD and
//! Linux. makemap(8) rebuilds it from its text source.
//!
//! Both libraries mark their descriptor close-on-exec themselves (hash
//! and btree `fcntl(F_SETFD, FD_CLOEXEC)` on OpenBSD, `__os_open` in
//! Berkeley DB), so no database leaks into a delivery agent.

use std::ffi::c_void;
use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::ptr::NonNull;

use libc::{c_char, c_int, c_uint, size_t};

use super::cstring;

/// `DBTYPE`: the access method of a database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbType {
    /// `DB_BTREE`: keys kept sorted.
    Btree,
    /// `DB_HASH`: what makemap(8) writes unless told `-d btree`, and the
    /// only kind the `db` table backend opens.
    Hash,
}

/// How a database is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbOpen {
    /// `O_RDONLY`: an existing database, for lookups.
    ReadOnly,
    /// `O_RDWR | O_CREAT | O_TRUNC`: an empty database in the file,
    /// created with `mode` (before the umask) when it does not exist.
    Truncate { mode: u32 },
}

/// Where `seq` goes: `R_FIRST` or `R_NEXT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbSeq {
    First,
    Next,
}

mod ffi {
    use super::{c_char, c_int, c_uint, c_void, size_t};

    /// `DBT`, the key/data thang.
    #[repr(C)]
    pub struct Dbt {
        pub data: *mut c_void,
        pub size: size_t,
    }

    /// `DBTYPE`, a C enum.
    pub const DB_BTREE: c_int = 0;
    pub const DB_HASH: c_int = 1;

    /// Routine flags.
    pub const R_FIRST: c_uint = 3;
    pub const R_NEXT: c_uint = 7;

    /// `struct __db`: the same layout in OpenBSD's <db.h> and Berkeley
    /// DB 5.3's <db_185.h>.
    #[repr(C)]
    pub struct Db {
        pub type_: c_int,
        pub close: unsafe extern "C" fn(*mut Db) -> c_int,
        pub del: unsafe extern "C" fn(*const Db, *const Dbt, c_uint) -> c_int,
        pub get: unsafe extern "C" fn(*const Db, *const Dbt, *mut Dbt, c_uint) -> c_int,
        pub put: unsafe extern "C" fn(*const Db, *mut Dbt, *const Dbt, c_uint) -> c_int,
        pub seq: unsafe extern "C" fn(*const Db, *mut Dbt, *mut Dbt, c_uint) -> c_int,
        pub sync: unsafe extern "C" fn(*const Db, c_uint) -> c_int,
        pub internal: *mut c_void,
        pub fd: unsafe extern "C" fn(*const Db) -> c_int,
    }

    // <db_185.h> renames dbopen to __db185_open.
    #[cfg_attr(target_os = "linux", link(name = "db-5.3"))]
    extern "C" {
        #[cfg_attr(target_os = "linux", link_name = "__db185_open")]
        pub fn dbopen(
            file: *const c_char,
            flags: c_int,
            mode: c_int,
            type_: c_int,
            openinfo: *const c_void,
        ) -> *mut Db;
    }
}

/// An open database: a `DB *` from dbopen(3), closed when dropped.
///
/// The key and data a call returns point into the library's buffers,
/// valid until the next call on the handle; they are copied out before
/// the call returns, so nothing borrowed outlives it. A handle is not
/// `Send`: neither library is safe to share between threads.
pub struct Db {
    db: NonNull<ffi::Db>,
}

/// A `DBT` describing `bytes`, for the library to read.
fn dbt_in(bytes: &[u8]) -> ffi::Dbt {
    ffi::Dbt {
        data: bytes.as_ptr() as *mut c_void,
        size: bytes.len(),
    }
}

/// An empty `DBT` for the library to fill.
fn dbt_out() -> ffi::Dbt {
    ffi::Dbt {
        data: std::ptr::null_mut(),
        size: 0,
    }
}

/// A copy of what a `DBT` filled by the library describes.
///
/// # Safety
/// `d` was filled by a successful get or seq on a handle that has not
/// been used since, so that `data` is valid for `size` bytes.
unsafe fn dbt_copy(d: &ffi::Dbt) -> Vec<u8> {
    if d.size == 0 || d.data.is_null() {
        return Vec::new();
    }
    // SAFETY: the caller's contract: data is valid for size bytes.
    unsafe { std::slice::from_raw_parts(d.data as *const u8, d.size) }.to_vec()
}

impl Db {
    /// dbopen(3) of `path` as `ty`. A file that is not a database of that
    /// type (the library's `EFTYPE` on OpenBSD, `EINVAL` with Berkeley DB)
    /// is an error of kind `InvalidData` that says so.
    pub fn open(path: &str, how: DbOpen, ty: DbType) -> io::Result<Db> {
        let cpath = cstring(path)?;
        let (flags, mode) = match how {
            DbOpen::ReadOnly => {
                db_check_magic(path, ty)?;
                (libc::O_RDONLY, 0)
            }
            DbOpen::Truncate { mode } => (libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC, mode),
        };
        let type_ = match ty {
            DbType::Btree => ffi::DB_BTREE,
            DbType::Hash => ffi::DB_HASH,
        };
        // SAFETY: cpath is NUL-terminated and outlives the call; a NULL
        // openinfo asks for the defaults.
        let db = unsafe {
            ffi::dbopen(
                cpath.as_ptr(),
                flags,
                mode as c_int,
                type_,
                std::ptr::null(),
            )
        };
        if let Some(db) = NonNull::new(db) {
            return Ok(Db { db });
        }
        let e = io::Error::last_os_error();
        #[cfg(target_os = "linux")]
        let wrong_type = e.raw_os_error() == Some(libc::EINVAL);
        #[cfg(not(target_os = "linux"))]
        let wrong_type = e.raw_os_error() == Some(libc::EFTYPE);
        if wrong_type {
            return Err(db_not_a_database(ty));
        }
        Err(e)
    }

    /// The handle's function table.
    fn methods(&self) -> &ffi::Db {
        // SAFETY: db came from a successful dbopen and is closed only by
        // close() or drop, which consume the handle.
        unsafe { self.db.as_ref() }
    }

    /// get: the data stored under `key`, None when there is none.
    pub fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let k = dbt_in(key);
        let mut v = dbt_out();
        // SAFETY: the handle is open; k describes `key`, which the
        // library only reads; v is filled by the call.
        let r = unsafe { (self.methods().get)(self.db.as_ptr(), &k, &mut v, 0) };
        match r {
            // SAFETY: a successful get filled v; nothing ran since.
            0 => Ok(Some(unsafe { dbt_copy(&v) })),
            1 => Ok(None),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// put: stores `data` under `key`, replacing what was there.
    pub fn put(&mut self, key: &[u8], data: &[u8]) -> io::Result<()> {
        let mut k = dbt_in(key);
        let v = dbt_in(data);
        // SAFETY: the handle is open; put reads key and data and copies
        // them into the database (its `DBT *` key is not const for the
        // recno method's sake, which we never open).
        let r = unsafe { (self.methods().put)(self.db.as_ptr(), &mut k, &v, 0) };
        match r {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// seq: the first entry, or the one after the last returned, in the
    /// database's order (sorted for a btree, the hash's own order for a
    /// hash); None past the last one.
    pub fn seq(&mut self, how: DbSeq) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let flag = match how {
            DbSeq::First => ffi::R_FIRST,
            DbSeq::Next => ffi::R_NEXT,
        };
        let (mut k, mut v) = (dbt_out(), dbt_out());
        // SAFETY: the handle is open; k and v are filled by the call.
        let r = unsafe { (self.methods().seq)(self.db.as_ptr(), &mut k, &mut v, flag) };
        match r {
            // SAFETY: a successful seq filled k and v; nothing ran since.
            0 => Ok(Some(unsafe { (dbt_copy(&k), dbt_copy(&v)) })),
            1 => Ok(None),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// sync: writes what the library caches to the file. It does not
    /// fsync(2) the file.
    pub fn sync(&mut self) -> io::Result<()> {
        // SAFETY: the handle is open; 0 is the only flag a hash or btree
        // takes.
        let r = unsafe { (self.methods().sync)(self.db.as_ptr(), 0) };
        match r {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// fd: the descriptor of the database's file, for fstat(2), fchmod(2)
    /// or fsync(2). It belongs to the handle.
    pub fn fd(&self) -> io::Result<BorrowedFd<'_>> {
        // SAFETY: the handle is open.
        let fd: RawFd = unsafe { (self.methods().fd)(self.db.as_ptr()) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the descriptor stays open as long as the handle, which
        // the returned borrow cannot outlive.
        Ok(unsafe { BorrowedFd::borrow_raw(fd) })
    }

    /// close: writes what is cached, closes the file and frees the
    /// handle. An error here means the database may be incomplete.
    pub fn close(self) -> io::Result<()> {
        let db = self.db;
        std::mem::forget(self);
        // SAFETY: the handle is open and, forgotten above, never used
        // again: close frees it whatever it returns.
        let r = unsafe { (db.as_ref().close)(db.as_ptr()) };
        match r {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // SAFETY: the handle is open (close() forgets it before closing)
        // and is not used after this.
        unsafe { (self.db.as_ref().close)(self.db.as_ptr()) };
    }
}

/// The error for a file that is not a database of type `ty`.
fn db_not_a_database(ty: DbType) -> io::Error {
    let kind = match ty {
        DbType::Btree => "btree",
        DbType::Hash => "hash",
    };
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("not a db(3) {kind} database, or a damaged one"),
    )
}

/// Berkeley DB writes what it finds wrong with a file on stderr, several
/// lines for some kinds of garbage, and there is no way to ask it not to
/// through the 1.85 interface. Before opening an existing database we
/// check its magic number ourselves (in the metadata page, at offset 12,
/// in the byte order of the system that wrote it), so that a file that
/// is not a database at all fails quietly with our own message.
#[cfg(target_os = "linux")]
fn db_check_magic(path: &str, ty: DbType) -> io::Result<()> {
    use std::io::Read;
    const HASHMAGIC: u32 = 0x061561;
    const BTREEMAGIC: u32 = 0x053162;
    let want = match ty {
        DbType::Btree => BTREEMAGIC,
        DbType::Hash => HASHMAGIC,
    };
    let mut meta = [0u8; 16];
    match std::fs::File::open(path)?.read_exact(&mut meta) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(db_not_a_database(ty)),
        r => r?,
    }
    let magic = [meta[12], meta[13], meta[14], meta[15]];
    if u32::from_le_bytes(magic) != want && u32::from_be_bytes(magic) != want {
        return Err(db_not_a_database(ty));
    }
    Ok(())
}

/// OpenBSD's dbopen prints nothing: it checks the file itself.
#[cfg(not(target_os = "linux"))]
fn db_check_magic(_path: &str, _ty: DbType) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::testing::TempDir;

    fn all(db: &mut Db) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        let mut how = DbSeq::First;
        while let Some(kv) = db.seq(how).unwrap() {
            out.push(kv);
            how = DbSeq::Next;
        }
        out
    }

    /// An empty database of type `ty` at `path`, open for writing.
    fn create(path: &str, ty: DbType) -> Db {
        Db::open(path, DbOpen::Truncate { mode: 0o600 }, ty).unwrap()
    }

    /// A database of type `ty` at `path` holding `entries`, closed.
    fn build(path: &str, ty: DbType, entries: &[(&[u8], &[u8])]) {
        let mut db = create(path, ty);
        for (k, v) in entries {
            db.put(k, v).unwrap();
        }
        db.close().unwrap();
    }

    /// Asserts that `path` is refused as a hash database, with our words.
    #[track_caller]
    fn assert_not_a_hash(path: &str) {
        let e = Db::open(path, DbOpen::ReadOnly, DbType::Hash)
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(
            e.to_string().starts_with("not a db(3) hash database"),
            "{e}"
        );
    }

    fn write_and_read_back(ty: DbType) {
        let dir = TempDir::new("db");
        let path = dir.path("map.db");
        let mut db = create(&path, ty);
        db.put(b"bob\0", b"robert\0").unwrap();
        db.put(b"alice\0", b"alice@example.org\0").unwrap();
        db.put(b"bob\0", b"bobby\0").unwrap();
        db.sync().unwrap();
        db.close().unwrap();

        let mut db = Db::open(&path, DbOpen::ReadOnly, ty).unwrap();
        assert_eq!(db.get(b"bob\0").unwrap().as_deref(), Some(&b"bobby\0"[..]));
        assert_eq!(db.get(b"bob").unwrap(), None);
        assert_eq!(db.get(b"carol\0").unwrap(), None);
        let mut entries = all(&mut db);
        entries.sort();
        assert_eq!(
            entries,
            [
                (b"alice\0".to_vec(), b"alice@example.org\0".to_vec()),
                (b"bob\0".to_vec(), b"bobby\0".to_vec()),
            ]
        );
        // Past the end, seq keeps saying so.
        assert_eq!(db.seq(DbSeq::Next).unwrap(), None);
    }

    #[test]
    fn a_hash_database_reads_back_what_was_put() {
        write_and_read_back(DbType::Hash);
    }

    #[test]
    fn a_btree_database_reads_back_what_was_put_in_key_order() {
        write_and_read_back(DbType::Btree);
        let dir = TempDir::new("db");
        let path = dir.path("sorted.db");
        let mut db = create(&path, DbType::Btree);
        for k in ["delta", "alpha", "charlie", "bravo"] {
            db.put(k.as_bytes(), b"x").unwrap();
        }
        let keys: Vec<Vec<u8>> = all(&mut db).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, [&b"alpha"[..], b"bravo", b"charlie", b"delta"]);
    }

    #[test]
    fn an_empty_database_has_no_first_entry() {
        let dir = TempDir::new("db");
        let path = dir.path("empty.db");
        build(&path, DbType::Hash, &[]);
        let mut db = Db::open(&path, DbOpen::ReadOnly, DbType::Hash).unwrap();
        assert_eq!(db.seq(DbSeq::First).unwrap(), None);
    }

    #[test]
    fn truncating_empties_an_existing_database() {
        let dir = TempDir::new("db");
        let path = dir.path("again.db");
        build(&path, DbType::Hash, &[(b"old", b"1")]);
        let mut db = create(&path, DbType::Hash);
        db.put(b"new", b"2").unwrap();
        assert_eq!(all(&mut db), [(b"new".to_vec(), b"2".to_vec())]);
    }

    #[test]
    fn truncating_keeps_the_file_so_its_descriptor_can_be_fsynced() {
        // makemap creates its temporary file with mkstemp, has the
        // database truncate it, and fsyncs the mkstemp descriptor: that
        // is only right if the library writes into the same file.
        use std::os::unix::fs::MetadataExt;
        let dir = TempDir::new("db");
        let path = dir.path("inode.db");
        let f = std::fs::File::create(&path).unwrap();
        let ino = f.metadata().unwrap().ino();
        build(&path, DbType::Hash, &[(b"k\0", b"v\0")]);
        assert_eq!(f.metadata().unwrap().ino(), ino);
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino);
        assert!(f.metadata().unwrap().len() > 0);
    }

    #[test]
    fn a_missing_file_is_enoent_and_garbage_is_not_a_database() {
        let dir = TempDir::new("db");
        let path = dir.path("missing.db");
        let e = Db::open(&path, DbOpen::ReadOnly, DbType::Hash)
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);

        let garbage = dir.path("garbage.db");
        let bytes: Vec<u8> = (0..16384u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        std::fs::write(&garbage, bytes).unwrap();
        assert_not_a_hash(&garbage);
        std::fs::write(&garbage, b"").unwrap();
        assert_not_a_hash(&garbage);
    }

    #[test]
    fn a_btree_is_not_opened_as_a_hash() {
        let dir = TempDir::new("db");
        let path = dir.path("btree.db");
        build(&path, DbType::Btree, &[(b"k\0", b"v\0")]);
        assert_not_a_hash(&path);
    }

    #[test]
    fn the_database_descriptor_is_close_on_exec() {
        use std::os::fd::AsRawFd;
        let cloexec = |db: &Db| {
            let fd = db.fd().unwrap().as_raw_fd();
            // SAFETY: fd is open for as long as db is.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            flags & libc::FD_CLOEXEC != 0
        };
        let dir = TempDir::new("db");
        let path = dir.path("cloexec.db");
        let db = create(&path, DbType::Hash);
        assert!(cloexec(&db));
        drop(db);
        let db = Db::open(&path, DbOpen::ReadOnly, DbType::Hash).unwrap();
        assert!(cloexec(&db));
    }
}

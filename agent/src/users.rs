//! Users and groups from the system's databases (`getpwnam_r`, `getgrnam_r`, `getgrouplist`,
//! so NSS sources such as LDAP count too): whom the agent runs tasks as (`run_as`).

use std::{
    ffi::{CStr, CString, OsString},
    io,
    os::unix::ffi::OsStringExt,
};

/// A user of the password database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
    pub home: OsString,
}

/// A user by name, or by number when `spec` is all digits; `None` when the database has no
/// such entry.
pub fn user(spec: &str) -> io::Result<Option<User>> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: `passwd` is plain data; getpw*_r fill it with pointers into `buf`.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = match spec.parse::<u32>() {
            // SAFETY: every pointer is valid for the call, `buf.len()` is its size.
            Ok(uid) => unsafe {
                libc::getpwuid_r(
                    uid,
                    &mut pwd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut found,
                )
            },
            Err(_) => {
                let Ok(name) = CString::new(spec) else {
                    return Ok(None);
                };
                // SAFETY: as above.
                unsafe {
                    libc::getpwnam_r(
                        name.as_ptr(),
                        &mut pwd,
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        &mut found,
                    )
                }
            }
        };
        match rc {
            0 if found.is_null() => return Ok(None),
            // SAFETY: filled by a successful lookup; its strings live in `buf`.
            0 => unsafe {
                return Ok(Some(User {
                    name: text(pwd.pw_name),
                    uid: pwd.pw_uid,
                    gid: pwd.pw_gid,
                    home: OsString::from_vec(CStr::from_ptr(pwd.pw_dir).to_bytes().to_vec()),
                }));
            },
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            // "Not found" comes back as one of these from some NSS modules.
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            errno => return Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

/// A group's id by name, or the number when `spec` is all digits (a group need not be listed
/// to be used); `None` when no group has that name.
pub fn group_id(spec: &str) -> io::Result<Option<u32>> {
    if let Ok(gid) = spec.parse::<u32>() {
        return Ok(Some(gid));
    }
    let Ok(name) = CString::new(spec) else {
        return Ok(None);
    };
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: `group` is plain data; getgrnam_r fills it with pointers into `buf`.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call, `buf.len()` is its size.
        let rc = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        match rc {
            0 if found.is_null() => return Ok(None),
            0 => return Ok(Some(grp.gr_gid)),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            errno => return Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

/// The groups `user` belongs to (its supplementary groups and `gid`), as `initgroups` would
/// set them.
pub fn groups_of(user: &str, gid: u32) -> Vec<u32> {
    let Ok(name) = CString::new(user) else {
        return vec![gid];
    };
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut n = groups.len() as libc::c_int;
        // SAFETY: `groups` holds `n` entries; getgrouplist writes at most that many.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n.max(0) as usize);
            return groups;
        }
        if groups.len() >= 65536 {
            return vec![gid];
        }
        // `n` says how many it needs.
        groups.resize((n.max(0) as usize).max(groups.len() * 2), 0);
    }
}

/// The effective user of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// A C string of the database, lossily as text.
///
/// # Safety
/// `ptr` must point to a NUL-terminated string.
unsafe fn text(ptr: *const libc::c_char) -> String {
    // SAFETY: per the contract.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_unknown_users_and_groups() {
        let root = user("root").unwrap().expect("root is listed");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(user("0").unwrap(), Some(root));
        assert_eq!(user("no-such-user-ferry").unwrap(), None);
        assert_eq!(user("bad\0name").unwrap(), None);
        assert_eq!(group_id("root").unwrap(), Some(0));
        assert_eq!(group_id("4321").unwrap(), Some(4321));
        assert_eq!(group_id("no-such-group-ferry").unwrap(), None);
        assert!(groups_of("root", 0).contains(&0));
    }
}

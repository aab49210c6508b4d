//! libbluray itself (loaded at run time, `libbluray.so.2`, which Debian's
//! FFmpeg already depends on), for the one thing FFmpeg's `bluray:` input
//! does not give: the files of a Blu-ray image's file system (UDF 2.50 with
//! its metadata partition on real discs). Its playlists are then read by
//! `bluray::parse_playlist`, as a folder's are.
//!
//! It runs on whatever a drive holds, so dtsflac calls it in a helper
//! process (`disc_image_files`): a crash or a hang there costs the probe of
//! one image, never the box.

use std::ffi::{c_char, c_int, c_void, CStr, CString};

/// libbluray's ABI since 1.0; Debian 12 and 13 both ship 1.3.4.
const LIBRARY: &CStr = c"libbluray.so.2";

#[repr(C)]
struct BdFile {
    internal: *mut c_void,
    close: Option<unsafe extern "C" fn(*mut BdFile)>,
    seek: Option<unsafe extern "C" fn(*mut BdFile, i64, i32) -> i64>,
    tell: Option<unsafe extern "C" fn(*mut BdFile) -> i64>,
    eof: Option<unsafe extern "C" fn(*mut BdFile) -> c_int>,
    read: Option<unsafe extern "C" fn(*mut BdFile, *mut u8, i64) -> i64>,
    write: Option<unsafe extern "C" fn(*mut BdFile, *const u8, i64) -> i64>,
}

#[repr(C)]
struct BdDirent {
    d_name: [c_char; 256],
}

#[repr(C)]
struct BdDir {
    internal: *mut c_void,
    close: Option<unsafe extern "C" fn(*mut BdDir)>,
    read: Option<unsafe extern "C" fn(*mut BdDir, *mut BdDirent) -> c_int>,
}

type Bluray = c_void;

type OpenFn = unsafe extern "C" fn(*const c_char, *const c_char) -> *mut Bluray;
type CloseFn = unsafe extern "C" fn(*mut Bluray);
type OpenFileFn = unsafe extern "C" fn(*mut Bluray, *const c_char) -> *mut BdFile;
type OpenDirFn = unsafe extern "C" fn(*mut Bluray, *const c_char) -> *mut BdDir;
type VersionFn = unsafe extern "C" fn(*mut c_int, *mut c_int, *mut c_int);
type DebugMaskFn = unsafe extern "C" fn(u32);

struct Api {
    open: OpenFn,
    close: CloseFn,
    open_file: OpenFileFn,
    open_dir: OpenDirFn,
    version: VersionFn,
    set_debug_mask: DebugMaskFn,
}

/// The library, loaded once per process and never unloaded.
fn api() -> Result<&'static Api, String> {
    static API: std::sync::OnceLock<Result<Api, String>> = std::sync::OnceLock::new();
    API.get_or_init(load).as_ref().map_err(Clone::clone)
}

fn load() -> Result<Api, String> {
    // SAFETY: dlopen/dlsym with NUL-terminated names; each symbol is cast to
    // the signature bluray.h declares for it.
    unsafe {
        let lib = libc::dlopen(LIBRARY.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if lib.is_null() {
            return Err("libbluray.so.2 is not installed (Debian's package libbluray2)".into());
        }
        let sym = |name: &CStr| {
            let f = libc::dlsym(lib, name.as_ptr());
            if f.is_null() {
                Err(format!(
                    "libbluray.so.2 lacks {} (libbluray 1.2 or later is needed)",
                    name.to_string_lossy()
                ))
            } else {
                Ok(f)
            }
        };
        Ok(Api {
            open: std::mem::transmute::<*mut c_void, OpenFn>(sym(c"bd_open")?),
            close: std::mem::transmute::<*mut c_void, CloseFn>(sym(c"bd_close")?),
            open_file: std::mem::transmute::<*mut c_void, OpenFileFn>(sym(c"bd_open_file_dec")?),
            open_dir: std::mem::transmute::<*mut c_void, OpenDirFn>(sym(c"bd_open_dir")?),
            version: std::mem::transmute::<*mut c_void, VersionFn>(sym(c"bd_get_version")?),
            set_debug_mask: std::mem::transmute::<*mut c_void, DebugMaskFn>(sym(
                c"bd_set_debug_mask",
            )?),
        })
    }
}

/// libbluray's version ("1.3.4"), or why it cannot be used.
pub fn version() -> Result<String, String> {
    let api = api()?;
    let (mut major, mut minor, mut micro) = (0, 0, 0);
    // SAFETY: three valid out-pointers.
    unsafe { (api.version)(&mut major, &mut minor, &mut micro) };
    Ok(format!("{major}.{minor}.{micro}"))
}

/// A disc (folder or image) opened by libbluray.
pub struct Disc {
    api: &'static Api,
    bd: *mut Bluray,
}

impl Disc {
    /// Opens the disc at `path` (an image file, or `/proc/self/fd/N` of one).
    pub fn open(path: &std::path::Path) -> Result<Disc, String> {
        use std::os::unix::ffi::OsStrExt;
        let api = api()?;
        let path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| "a path with a NUL byte".to_string())?;
        // SAFETY: plain calls; a NULL key file is allowed. Only its errors
        // are logged (DBG_CRIT), on stderr.
        let bd = unsafe {
            (api.set_debug_mask)(0x800);
            (api.open)(path.as_ptr(), std::ptr::null())
        };
        if bd.is_null() {
            return Err("libbluray cannot open it as a Blu-ray disc".into());
        }
        Ok(Disc { api, bd })
    }

    /// The file at `path` (from the disc's root, "BDMV/PLAYLIST/00000.mpls"),
    /// if it has at most `max` bytes: `Ok(None)` if there is none.
    pub fn read(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>, String> {
        let name = CString::new(path).map_err(|_| format!("{path}: a name with a NUL byte"))?;
        // SAFETY: `bd` is open; the handle is closed below, once.
        let file = unsafe { (self.api.open_file)(self.bd, name.as_ptr()) };
        if file.is_null() {
            return Ok(None);
        }
        let mut data = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        let result = loop {
            // SAFETY: `file` is a live handle whose `read` fills at most
            // `chunk.len()` bytes.
            let n = unsafe {
                match (*file).read {
                    Some(read) => read(file, chunk.as_mut_ptr(), chunk.len() as i64),
                    None => -1,
                }
            };
            match n {
                n if n < 0 => break Err(format!("{path}: libbluray cannot read it")),
                0 => break Ok(Some(data)),
                n => {
                    let n = (n as usize).min(chunk.len());
                    data.extend_from_slice(&chunk[..n]);
                    if data.len() as u64 > max {
                        break Err(format!("{path} is over {max} bytes; not a disc's file"));
                    }
                }
            }
        };
        // SAFETY: closes the handle opened above.
        unsafe {
            if let Some(close) = (*file).close {
                close(file);
            }
        }
        result
    }

    /// The names in the folder at `path` (from the disc's root), at most
    /// `max` of them; none if there is no such folder (or as many as could
    /// be read).
    pub fn list(&self, path: &str, max: usize) -> Result<Vec<String>, String> {
        let name = CString::new(path).map_err(|_| format!("{path}: a name with a NUL byte"))?;
        // SAFETY: `bd` is open; the handle is closed below, once.
        let dir = unsafe { (self.api.open_dir)(self.bd, name.as_ptr()) };
        if dir.is_null() {
            return Ok(Vec::new());
        }
        let mut names = Vec::new();
        let result = loop {
            let mut entry = BdDirent { d_name: [0; 256] };
            // SAFETY: `dir` is a live handle; `entry` is the size it writes.
            let got = unsafe {
                match (*dir).read {
                    Some(read) => read(dir, &mut entry),
                    None => -1,
                }
            };
            match got {
                0 => {
                    // The last byte is kept NUL whatever libbluray wrote.
                    entry.d_name[255] = 0;
                    // SAFETY: NUL-terminated within the array.
                    let name = unsafe { CStr::from_ptr(entry.d_name.as_ptr()) };
                    let name = name.to_string_lossy();
                    if name != "." && name != ".." {
                        names.push(name.into_owned());
                    }
                    if names.len() > max {
                        break Err(format!("{path} holds over {max} entries"));
                    }
                }
                // 1 is the end of a folder's listing; an image's (UDF) ends
                // with -1 in libbluray 1.3, as an error would.
                _ => break Ok(names),
            }
        };
        // SAFETY: closes the handle opened above.
        unsafe {
            if let Some(close) = (*dir).close {
                close(dir);
            }
        }
        result
    }
}

impl Drop for Disc {
    fn drop(&mut self) {
        // SAFETY: opened by `bd_open`, closed once.
        unsafe { (self.api.close)(self.bd) }
    }
}

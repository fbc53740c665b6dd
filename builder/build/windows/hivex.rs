//! The hivex library on the host, loaded with dlopen, for the one edit
//! that libguestfs's hivex calls make costly: setting many values of one
//! key. libguestfs sets one value per call, and hivex writes the key's
//! whole value list again each time without reusing freed space, so
//! disabling 300 rules of a 300-value FirewallRules key one by one grew a
//! test hive from 148 KiB to 40 MiB. `hivex_node_set_values` writes the
//! list once.
//!
//! libhivex.so.0 is on every host that has libguestfs (the Debian package
//! libguestfs0 depends on libhivex0). The API is hivex.h of hivex 1.3.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::registry::Value;

/// `HIVEX_OPEN_WRITE` of hivex.h.
const OPEN_WRITE: c_int = 4;

type Handle = *mut c_void;
type NodeHandle = usize;

/// `hive_set_value` of hivex.h.
#[repr(C)]
struct SetValue {
    key: *const c_char,
    kind: c_int,
    len: usize,
    value: *const c_char,
}

type OpenFn = unsafe extern "C" fn(*const c_char, c_int) -> Handle;
type CloseFn = unsafe extern "C" fn(Handle) -> c_int;
type RootFn = unsafe extern "C" fn(Handle) -> NodeHandle;
type GetChildFn = unsafe extern "C" fn(Handle, NodeHandle, *const c_char) -> NodeHandle;
type ValuesFn = unsafe extern "C" fn(Handle, NodeHandle) -> *mut usize;
type ValueKeyFn = unsafe extern "C" fn(Handle, usize) -> *mut c_char;
type ValueValueFn = unsafe extern "C" fn(Handle, usize, *mut c_int, *mut usize) -> *mut c_char;
type SetValuesFn = unsafe extern "C" fn(Handle, NodeHandle, usize, *const SetValue, c_int) -> c_int;
type CommitFn = unsafe extern "C" fn(Handle, *const c_char, c_int) -> c_int;

/// The functions of libhivex.so.0 that forge calls.
struct Library {
    open: OpenFn,
    close: CloseFn,
    root: RootFn,
    get_child: GetChildFn,
    values: ValuesFn,
    value_key: ValueKeyFn,
    value_value: ValueValueFn,
    set_values: SetValuesFn,
    commit: CommitFn,
}

fn library() -> Result<&'static Library> {
    static LIBRARY: std::sync::OnceLock<std::result::Result<Library, String>> =
        std::sync::OnceLock::new();
    LIBRARY
        .get_or_init(load)
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn load() -> std::result::Result<Library, String> {
    let name = c"libhivex.so.0";
    // SAFETY: dlopen with a valid NUL-terminated name; the handle is kept
    // for the life of the process, so the symbols stay valid.
    let lib = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW) };
    if lib.is_null() {
        return Err(
            "failed to load libhivex.so.0; install the package libhivex0 (libguestfs needs it \
             too)"
                .to_owned(),
        );
    }
    let symbol = |name: &CStr| -> std::result::Result<*mut c_void, String> {
        // SAFETY: lib is a valid handle and name is NUL-terminated.
        let p = unsafe { libc::dlsym(lib, name.as_ptr()) };
        if p.is_null() {
            Err(format!("libhivex.so.0 has no symbol {name:?}"))
        } else {
            Ok(p)
        }
    };
    // SAFETY: each symbol has the C signature of hivex.h that its field
    // declares.
    unsafe {
        Ok(Library {
            open: std::mem::transmute::<*mut c_void, OpenFn>(symbol(c"hivex_open")?),
            close: std::mem::transmute::<*mut c_void, CloseFn>(symbol(c"hivex_close")?),
            root: std::mem::transmute::<*mut c_void, RootFn>(symbol(c"hivex_root")?),
            get_child: std::mem::transmute::<*mut c_void, GetChildFn>(symbol(
                c"hivex_node_get_child",
            )?),
            values: std::mem::transmute::<*mut c_void, ValuesFn>(symbol(c"hivex_node_values")?),
            value_key: std::mem::transmute::<*mut c_void, ValueKeyFn>(symbol(c"hivex_value_key")?),
            value_value: std::mem::transmute::<*mut c_void, ValueValueFn>(symbol(
                c"hivex_value_value",
            )?),
            set_values: std::mem::transmute::<*mut c_void, SetValuesFn>(symbol(
                c"hivex_node_set_values",
            )?),
            commit: std::mem::transmute::<*mut c_void, CommitFn>(symbol(c"hivex_commit")?),
        })
    }
}

/// A hive file on the host, open for writing.
pub struct HostHive {
    lib: &'static Library,
    h: Handle,
    label: String,
}

impl HostHive {
    pub fn open(path: &Path) -> Result<Self> {
        let lib = library()?;
        let c_path = CString::new(path.as_os_str().as_encoded_bytes())?;
        // SAFETY: a valid path string; hivex returns NULL on failure.
        let h = unsafe { (lib.open)(c_path.as_ptr(), OPEN_WRITE) };
        if h.is_null() {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("hivex failed to open {}", path.display()));
        }
        Ok(Self {
            lib,
            h,
            label: path.display().to_string(),
        })
    }

    /// Opens the key at `path` below the root, matching names without
    /// regard to case as hivex does, or `None` when one is missing.
    pub fn open_key(&self, path: &[&str]) -> Result<Option<NodeHandle>> {
        // SAFETY: h is an open hive.
        let mut node = unsafe { (self.lib.root)(self.h) };
        if node == 0 {
            bail!("{} has no root key", self.label);
        }
        for name in path {
            let c_name = CString::new(*name)?;
            // SAFETY: h is open, node a key of it, c_name NUL-terminated.
            node = unsafe { (self.lib.get_child)(self.h, node, c_name.as_ptr()) };
            if node == 0 {
                return Ok(None);
            }
        }
        Ok(Some(node))
    }

    /// Reads every value of a key.
    pub fn values(&self, node: NodeHandle) -> Result<Vec<Value>> {
        // SAFETY: h is open and node a key of it. hivex returns a
        // malloc'd array ended by 0, and malloc'd key and value buffers,
        // each freed here once copied.
        unsafe {
            let list = (self.lib.values)(self.h, node);
            if list.is_null() {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("hivex failed to list values in {}", self.label));
            }
            let mut out = Vec::new();
            let mut i = 0;
            while *list.add(i) != 0 {
                let v = *list.add(i);
                i += 1;
                let key = (self.lib.value_key)(self.h, v);
                let mut kind: c_int = 0;
                let mut len: usize = 0;
                let data = (self.lib.value_value)(self.h, v, &mut kind, &mut len);
                if key.is_null() || data.is_null() {
                    libc::free(key.cast());
                    libc::free(data.cast());
                    libc::free(list.cast());
                    bail!("hivex failed to read a value in {}", self.label);
                }
                out.push(Value {
                    name: CStr::from_ptr(key).to_string_lossy().into_owned(),
                    kind: kind as u32,
                    data: std::slice::from_raw_parts(data.cast::<u8>(), len).to_vec(),
                });
                libc::free(key.cast());
                libc::free(data.cast());
            }
            libc::free(list.cast());
            Ok(out)
        }
    }

    /// Replaces every value of a key with `values`, in one write.
    pub fn set_values(&mut self, node: NodeHandle, values: &[Value]) -> Result<()> {
        let keys: Vec<CString> = values
            .iter()
            .map(|v| CString::new(v.name.as_str()))
            .collect::<std::result::Result<_, _>>()?;
        let list: Vec<SetValue> = values
            .iter()
            .zip(&keys)
            .map(|(v, key)| SetValue {
                key: key.as_ptr(),
                kind: v.kind as c_int,
                len: v.data.len(),
                value: v.data.as_ptr().cast(),
            })
            .collect();
        // SAFETY: h is open, node a key of it, and the list points into
        // `keys` and `values`, which outlive the call; hivex copies them.
        let r = unsafe { (self.lib.set_values)(self.h, node, list.len(), list.as_ptr(), 0) };
        if r != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("hivex failed to set values in {}", self.label));
        }
        Ok(())
    }

    /// Writes the changes back to the file and closes the hive.
    pub fn commit(self) -> Result<()> {
        // SAFETY: h is open; a NULL file name commits to the opened file.
        let r = unsafe { (self.lib.commit)(self.h, std::ptr::null(), 0) };
        if r != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("hivex failed to write {}", self.label));
        }
        Ok(())
    }
}

impl Drop for HostHive {
    fn drop(&mut self) {
        // SAFETY: h is open and closed only here.
        unsafe {
            (self.lib.close)(self.h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hive with a root key only, as hivex 1.3 writes one (from the
    /// layout of the base block and first bin).
    fn empty_hive(path: &Path) {
        let mut base = vec![0u8; 4096];
        base[..4].copy_from_slice(b"regf");
        for (at, v) in [
            (4, 1u32),
            (8, 1),
            (20, 1),
            (24, 5),
            (28, 0),
            (32, 1),
            (36, 0x20),
        ] {
            base[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        base[40..44].copy_from_slice(&0x1000u32.to_le_bytes());
        base[44..48].copy_from_slice(&1u32.to_le_bytes());
        let sum = (0..0x1fc).step_by(4).fold(0u32, |acc, i| {
            acc ^ u32::from_le_bytes(base[i..i + 4].try_into().unwrap())
        });
        base[0x1fc..0x200].copy_from_slice(&sum.to_le_bytes());
        let mut bin = vec![0u8; 4096];
        bin[..4].copy_from_slice(b"hbin");
        bin[8..12].copy_from_slice(&0x1000u32.to_le_bytes());
        // The root key: nk cell at 0x20 of size 0x58, then an sk cell.
        let nk = 0x20;
        bin[nk..nk + 4].copy_from_slice(&(-0x58i32).to_le_bytes());
        bin[nk + 4..nk + 6].copy_from_slice(b"nk");
        bin[nk + 6..nk + 8].copy_from_slice(&0x2cu16.to_le_bytes());
        for field in [0x1c, 0x20, 0x28, 0x30] {
            bin[nk + 4 + field..nk + 8 + field].copy_from_slice(&u32::MAX.to_le_bytes());
        }
        bin[nk + 4 + 0x2c..nk + 8 + 0x2c].copy_from_slice(&0x78u32.to_le_bytes());
        bin[nk + 4 + 0x48..nk + 6 + 0x48].copy_from_slice(&4u16.to_le_bytes());
        bin[nk + 4 + 0x4c..nk + 8 + 0x4c].copy_from_slice(b"ROOT");
        let sk = 0x78;
        bin[sk..sk + 4].copy_from_slice(&(-0x30i32).to_le_bytes());
        bin[sk + 4..sk + 6].copy_from_slice(b"sk");
        bin[sk + 8..sk + 12].copy_from_slice(&(sk as u32).to_le_bytes());
        bin[sk + 12..sk + 16].copy_from_slice(&(sk as u32).to_le_bytes());
        bin[sk + 16..sk + 20].copy_from_slice(&1u32.to_le_bytes());
        bin[sk + 20..sk + 24].copy_from_slice(&20u32.to_le_bytes());
        bin[sk + 24] = 1;
        bin[sk + 26..sk + 28].copy_from_slice(&0x8000u16.to_le_bytes());
        let free = sk + 0x30;
        bin[free..free + 4].copy_from_slice(&((0x1000 - free) as i32).to_le_bytes());
        std::fs::write(path, [base, bin].concat()).unwrap();
    }

    #[test]
    fn values_are_set_in_one_write_and_read_back() {
        if library().is_err() {
            eprintln!("skipping: libhivex.so.0 is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hive");
        empty_hive(&path);
        let values: Vec<Value> = (0..300)
            .map(|i| Value {
                name: format!("Rule-{i}"),
                kind: 1,
                data: crate::recipe::utf16z(&format!("v2.31|Action=Allow|Active=TRUE|LPort={i}|")),
            })
            .collect();
        let mut hive = HostHive::open(&path).unwrap();
        let root = hive.open_key(&[]).unwrap().unwrap();
        hive.set_values(root, &values).unwrap();
        hive.commit().unwrap();
        let first = std::fs::metadata(&path).unwrap().len();

        let mut hive = HostHive::open(&path).unwrap();
        let root = hive.open_key(&[]).unwrap().unwrap();
        let mut read = hive.values(root).unwrap();
        assert_eq!(read, values);
        for v in &mut read {
            v.data = crate::recipe::utf16z("v2.31|Action=Allow|Active=FALSE|");
        }
        hive.set_values(root, &read).unwrap();
        hive.commit().unwrap();
        let second = std::fs::metadata(&path).unwrap().len();
        assert!(second < 2 * first, "{first} then {second} bytes");
        let hive = HostHive::open(&path).unwrap();
        let root = hive.open_key(&[]).unwrap().unwrap();
        assert_eq!(hive.values(root).unwrap(), read);
        assert!(hive.open_key(&["missing"]).unwrap().is_none());
    }
}

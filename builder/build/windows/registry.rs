//! Registry hives as the Windows build edits them: a small interface over
//! hivex, path helpers, and value decoding. libguestfs serves the hives of
//! a real build; [`MemHive`] serves the unit tests.
//!
//! hivex matches key names case-insensitively, as Windows does; value
//! names are matched case-insensitively here too.

use anyhow::{bail, Context, Result};

use crate::recipe::{REG_DWORD, REG_EXPAND_SZ, REG_SZ};

/// A key of an open hive.
pub type Node = i64;

/// One value of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    /// Value name; empty for the key's default value.
    pub name: String,
    /// Registry type (REG_SZ is 1, REG_DWORD is 4, ...). In the SAM hive
    /// the type field of some values contains other numbers, such as a RID.
    pub kind: u32,
    pub data: Vec<u8>,
}

impl Value {
    /// Returns the value as a number if it is a REG_DWORD.
    pub fn dword(&self) -> Option<u32> {
        (self.kind == REG_DWORD && self.data.len() >= 4)
            .then(|| u32::from_le_bytes(self.data[..4].try_into().expect("4 bytes")))
    }

    /// Returns the value as text if it is a REG_SZ or REG_EXPAND_SZ.
    pub fn text(&self) -> Option<String> {
        matches!(self.kind, REG_SZ | REG_EXPAND_SZ).then(|| decode_utf16(&self.data))
    }
}

/// Decodes UTF-16LE registry string data, up to the first NUL character.
pub fn decode_utf16(data: &[u8]) -> String {
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|u| *u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// The hivex calls the build needs on one open hive.
pub trait Hive {
    /// The path of the hive file, for messages.
    fn label(&self) -> &str;
    fn root(&self) -> Result<Node>;
    /// Finds a subkey by name, ignoring case.
    fn child(&self, node: Node, name: &str) -> Result<Option<Node>>;
    fn children(&self, node: Node) -> Result<Vec<Node>>;
    fn name(&self, node: Node) -> Result<String>;
    fn values(&self, node: Node) -> Result<Vec<Value>>;
    fn add_child(&mut self, parent: Node, name: &str) -> Result<Node>;
    /// Deletes a key with all its subkeys and values.
    fn delete(&mut self, node: Node) -> Result<()>;
    /// Sets one value, adding it or replacing the one of the same name.
    fn set_value(&mut self, node: Node, name: &str, kind: u32, data: &[u8]) -> Result<()>;
}

/// Opens the key at `path` below the root, or `None` when a key on the
/// way is missing.
pub fn open(hive: &dyn Hive, path: &[&str]) -> Result<Option<Node>> {
    let mut node = hive.root()?;
    for name in path {
        match hive.child(node, name)? {
            Some(child) => node = child,
            None => return Ok(None),
        }
    }
    Ok(Some(node))
}

/// Opens the key at `path`, creating the missing keys on the way.
pub fn create(hive: &mut dyn Hive, path: &[&str]) -> Result<Node> {
    let mut node = hive.root()?;
    for name in path {
        node = match hive.child(node, name)? {
            Some(child) => child,
            None => hive
                .add_child(node, name)
                .with_context(|| format!("failed to add key {name:?} in {}", hive.label()))?,
        };
    }
    Ok(node)
}

/// Returns the value `name` of `node`, matched ignoring case.
pub fn value(hive: &dyn Hive, node: Node, name: &str) -> Result<Option<Value>> {
    Ok(hive
        .values(node)?
        .into_iter()
        .find(|v| v.name.eq_ignore_ascii_case(name)))
}

/// Returns the value `name` of the key at `path`, if both exist.
pub fn value_at(hive: &dyn Hive, path: &[&str], name: &str) -> Result<Option<Value>> {
    match open(hive, path)? {
        Some(node) => value(hive, node, name),
        None => Ok(None),
    }
}

/// Sets a REG_DWORD value.
pub fn set_dword(hive: &mut dyn Hive, node: Node, name: &str, n: u32) -> Result<()> {
    hive.set_value(node, name, REG_DWORD, &n.to_le_bytes())
}

/// Sets a REG_SZ value.
pub fn set_string(hive: &mut dyn Hive, node: Node, name: &str, text: &str) -> Result<()> {
    hive.set_value(node, name, REG_SZ, &crate::recipe::utf16z(text))
}

/// A key's contents, read to copy it.
struct Subtree {
    name: String,
    values: Vec<Value>,
    children: Vec<Subtree>,
}

fn read_subtree(hive: &dyn Hive, node: Node) -> Result<Subtree> {
    let mut children = Vec::new();
    for child in hive.children(node)? {
        children.push(read_subtree(hive, child)?);
    }
    Ok(Subtree {
        name: hive.name(node)?,
        values: hive.values(node)?,
        children,
    })
}

fn write_subtree(hive: &mut dyn Hive, parent: Node, tree: &Subtree) -> Result<Node> {
    let node = hive.add_child(parent, &tree.name)?;
    for v in &tree.values {
        hive.set_value(node, &v.name, v.kind, &v.data)?;
    }
    for child in &tree.children {
        write_subtree(hive, node, child)?;
    }
    Ok(node)
}

/// Removes the value `name` from the key at `path`; returns whether it was
/// there.
///
/// libguestfs has no call that deletes one value, so the key is copied
/// without it: its subkeys and other values are read, the key is deleted
/// and written again under the same parent. The new keys get the parent's
/// security descriptor, as hivex gives every key it adds, and no class
/// name.
pub fn delete_value(hive: &mut dyn Hive, path: &[&str], name: &str) -> Result<bool> {
    let Some((last, parent_path)) = path.split_last() else {
        bail!("the root key of {} cannot be copied", hive.label());
    };
    let Some(node) = open(hive, path)? else {
        return Ok(false);
    };
    if value(hive, node, name)?.is_none() {
        return Ok(false);
    }
    let mut tree = read_subtree(hive, node)?;
    tree.values.retain(|v| !v.name.eq_ignore_ascii_case(name));
    let parent = open(hive, parent_path)?
        .with_context(|| format!("the parent of {last:?} vanished in {}", hive.label()))?;
    hive.delete(node)?;
    write_subtree(hive, parent, &tree)?;
    Ok(true)
}

/// An in-memory hive with the same behaviour as hivex, for tests.
#[cfg(test)]
pub struct MemHive {
    nodes: Vec<MemNode>,
}

#[cfg(test)]
struct MemNode {
    name: String,
    parent: usize,
    children: Vec<usize>,
    values: Vec<Value>,
}

#[cfg(test)]
impl Default for MemHive {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
impl MemHive {
    pub fn new() -> Self {
        Self {
            nodes: vec![MemNode {
                name: "ROOT".into(),
                parent: 0,
                children: Vec::new(),
                values: Vec::new(),
            }],
        }
    }

    fn node(&self, node: Node) -> Result<&MemNode> {
        self.nodes
            .get(node as usize)
            .filter(|n| node == 0 || !n.name.is_empty())
            .context("no such node")
    }

    /// Sets a value at `path`, creating the keys: a test's setup.
    pub fn put(&mut self, path: &[&str], name: &str, kind: u32, data: &[u8]) {
        let node = create(self, path).unwrap();
        self.set_value(node, name, kind, data).unwrap();
    }

    pub fn get(&self, path: &[&str], name: &str) -> Option<Value> {
        value_at(self, path, name).unwrap()
    }
}

#[cfg(test)]
impl Hive for MemHive {
    fn label(&self) -> &str {
        "test hive"
    }
    fn root(&self) -> Result<Node> {
        Ok(0)
    }
    fn child(&self, node: Node, name: &str) -> Result<Option<Node>> {
        Ok(self
            .node(node)?
            .children
            .iter()
            .find(|c| self.nodes[**c].name.eq_ignore_ascii_case(name))
            .map(|c| *c as Node))
    }
    fn children(&self, node: Node) -> Result<Vec<Node>> {
        Ok(self
            .node(node)?
            .children
            .iter()
            .map(|c| *c as Node)
            .collect())
    }
    fn name(&self, node: Node) -> Result<String> {
        Ok(self.node(node)?.name.clone())
    }
    fn values(&self, node: Node) -> Result<Vec<Value>> {
        Ok(self.node(node)?.values.clone())
    }
    fn add_child(&mut self, parent: Node, name: &str) -> Result<Node> {
        self.node(parent)?;
        let id = self.nodes.len();
        self.nodes.push(MemNode {
            name: name.into(),
            parent: parent as usize,
            children: Vec::new(),
            values: Vec::new(),
        });
        self.nodes[parent as usize].children.push(id);
        Ok(id as Node)
    }
    fn delete(&mut self, node: Node) -> Result<()> {
        let parent = self.node(node)?.parent;
        self.nodes[parent].children.retain(|c| *c != node as usize);
        let mut stack = vec![node as usize];
        while let Some(n) = stack.pop() {
            stack.append(&mut self.nodes[n].children);
            self.nodes[n].name.clear();
        }
        Ok(())
    }
    fn set_value(&mut self, node: Node, name: &str, kind: u32, data: &[u8]) -> Result<()> {
        self.node(node)?;
        let values = &mut self.nodes[node as usize].values;
        let new = Value {
            name: name.into(),
            kind,
            data: data.to_vec(),
        };
        match values
            .iter_mut()
            .find(|v| v.name.eq_ignore_ascii_case(name))
        {
            Some(v) => *v = new,
            None => values.push(new),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::utf16z;

    #[test]
    fn paths_resolve_ignoring_case() {
        let mut hive = MemHive::new();
        hive.put(&["Microsoft", "Windows NT"], "X", REG_DWORD, &[1, 0, 0, 0]);
        let v = hive.get(&["MICROSOFT", "windows nt"], "x").unwrap();
        assert_eq!(v.dword(), Some(1));
        assert!(open(&hive, &["Microsoft", "Nope"]).unwrap().is_none());
    }

    #[test]
    fn strings_decode_to_the_first_nul() {
        let v = Value {
            name: String::new(),
            kind: REG_SZ,
            data: [utf16z("abc"), vec![0x41, 0]].concat(),
        };
        assert_eq!(v.text().unwrap(), "abc");
    }

    #[test]
    fn deleting_a_value_keeps_the_rest_of_the_key() {
        let mut hive = MemHive::new();
        let key = ["Microsoft", "Windows NT", "CurrentVersion", "Winlogon"];
        hive.put(&key, "DefaultPassword", REG_SZ, &utf16z("secret"));
        hive.put(&key, "Shell", REG_SZ, &utf16z("explorer.exe"));
        let sub = [&key[..], &["GPExtensions", "{1}"]].concat();
        hive.put(&sub, "DllName", REG_SZ, &utf16z("x.dll"));
        assert!(delete_value(&mut hive, &key, "defaultpassword").unwrap());
        assert!(hive.get(&key, "DefaultPassword").is_none());
        assert_eq!(
            hive.get(&key, "Shell").unwrap().text().unwrap(),
            "explorer.exe"
        );
        assert_eq!(hive.get(&sub, "DllName").unwrap().text().unwrap(), "x.dll");
        assert!(!delete_value(&mut hive, &key, "DefaultPassword").unwrap());
    }
}

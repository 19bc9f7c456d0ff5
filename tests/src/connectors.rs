//! Connectors for the end-to-end suites: copy a fixture (`plugins/fixtures/<name>`) or a
//! sample connector (`plugins/<name>`) into a test's own plugins folder — its manifest and
//! component only, as the server reads them — and rewrite its manifest there.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use toml_edit::{value, Array, DocumentMut, Item, Table};

use crate::repo_root;

/// The folder of fixture connector `name` in the repository.
pub fn fixture_dir(name: &str) -> PathBuf {
    repo_root().join("plugins").join("fixtures").join(name)
}

/// Copies the manifest and component of the connector in `from` into `plugins/<name>/`
/// (replacing what was there the way an editor or a deploy does: write aside, rename over).
pub fn copy_connector(from: &Path, plugins: &Path, name: &str) {
    let to = plugins.join(name);
    std::fs::create_dir_all(&to).expect("mkdir plugins/<name>");
    let manifest = std::fs::read_to_string(from.join("connector.toml")).expect("read manifest");
    let doc: DocumentMut = manifest.parse().expect("manifest is TOML");
    let component = doc["component"]
        .as_str()
        .expect("manifest names its component");
    replace(
        &to.join(component),
        &std::fs::read(from.join(component)).expect("read component"),
    );
    replace(&to.join("connector.toml"), manifest.as_bytes());
}

/// Copies fixture `name` into `plugins/<name>/`.
pub fn copy_fixture(plugins: &Path, name: &str) {
    copy_connector(&fixture_dir(name), plugins, name);
}

/// Rewrites the manifest of `plugins/<name>/` with `edit`.
pub fn edit_manifest(plugins: &Path, name: &str, edit: impl FnOnce(&mut DocumentMut)) {
    let path = plugins.join(name).join("connector.toml");
    let mut doc: DocumentMut = std::fs::read_to_string(&path)
        .expect("read manifest")
        .parse()
        .expect("manifest is TOML");
    edit(&mut doc);
    replace(&path, doc.to_string().as_bytes());
}

/// Sets `[allow] hosts` of `plugins/<name>/`.
pub fn allow_hosts(plugins: &Path, name: &str, hosts: &[&str]) {
    edit_manifest(plugins, name, |doc| {
        let mut list = Array::new();
        for h in hosts {
            list.push(*h);
        }
        table(doc, "allow")["hosts"] = value(list);
    });
}

/// Sets `[limits] <key> = n` of `plugins/<name>/`.
pub fn set_limit(plugins: &Path, name: &str, key: &str, n: i64) {
    edit_manifest(plugins, name, |doc| table(doc, "limits")[key] = value(n));
}

/// Sets `[config] <key>` of `plugins/<name>/` to a TOML value given as text (`"\"x\""`, `"[1]"`).
pub fn set_config(plugins: &Path, name: &str, key: &str, toml_value: &str) {
    let parsed: DocumentMut = format!("v = {toml_value}").parse().expect("a TOML value");
    let v = parsed["v"].clone();
    edit_manifest(plugins, name, |doc| table(doc, "config")[key] = v);
}

fn table<'a>(doc: &'a mut DocumentMut, name: &str) -> &'a mut Table {
    if !doc.contains_key(name) {
        doc[name] = Item::Table(Table::new());
    }
    doc[name].as_table_mut().expect("a table")
}

/// Writes `bytes` beside `path` and renames it over, so a watcher never sees half a file.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).expect("write temp");
    std::fs::rename(&tmp, path).expect("rename into place");
}

/// Rewrites `plugins/echo/echo.wasm` as a different but equivalent component (the fixture's
/// with a custom section named `pintu-test` holding `tag` appended) and its manifest's `sha256`
/// to match, component first; returns the new hash. The server sees a new release.
pub fn replace_echo_component(plugins: &Path, tag: &str) -> String {
    let mut wasm = std::fs::read(fixture_dir("echo").join("echo.wasm")).expect("read echo.wasm");
    let name = b"pintu-test";
    let mut payload = vec![u8::try_from(name.len()).expect("short name")];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    wasm.push(0); // custom section id
    let mut size = payload.len();
    loop {
        // LEB128 section size.
        let byte = u8::try_from(size & 0x7f).expect("7 bits");
        size >>= 7;
        if size == 0 {
            wasm.push(byte);
            break;
        }
        wasm.push(byte | 0x80);
    }
    wasm.extend_from_slice(&payload);
    let sha = hex(&Sha256::digest(&wasm));
    replace(&plugins.join("echo").join("echo.wasm"), &wasm);
    let sha_for_manifest = sha.clone();
    edit_manifest(plugins, "echo", move |doc| {
        doc["sha256"] = value(sha_for_manifest);
    });
    sha
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

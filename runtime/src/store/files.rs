//! The data folder on disk: private permissions, and refusing a database file that cannot be
//! one before redb would quietly start a new database in it.

use std::path::Path;

use super::StoreError;

/// The data folder holds NIKs, names and token hashes: only the server's user may enter it.
#[cfg(unix)]
const DIR_MODE: u32 = 0o700;
/// Mode of every file in the data folder.
#[cfg(unix)]
const FILE_MODE: u32 = 0o600;

/// Creates the data folder private, or tightens an existing one and the files in it (with a log
/// line for each change, so an operator sees what was open before).
pub fn prepare_dir(dir: &Path) -> Result<(), StoreError> {
    let data_dir = |source| StoreError::DataDir {
        path: dir.to_owned(),
        source,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(data_dir)?;
        }
        tighten(dir, DIR_MODE).map_err(data_dir)?;
        for entry in std::fs::read_dir(dir).map_err(data_dir)?.flatten() {
            let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
            if is_file {
                tighten(&entry.path(), FILE_MODE).map_err(data_dir)?;
            }
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(data_dir)?;
    Ok(())
}

/// Removes any permission beyond `mode` from `path`.
#[cfg(unix)]
fn tighten(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    let wanted = current & mode;
    if current != wanted {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted))?;
        tracing::warn!(
            "tightened permissions of {} from {current:o} to {wanted:o}: it holds personal data",
            path.display()
        );
    }
    Ok(())
}

/// Checks the database file before redb sees it: an existing empty file is refused, because
/// redb would turn it into a new database — a new admin token and no history — without a word.
pub fn refuse_empty_db(path: &Path) -> Result<(), StoreError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() == 0 => Err(StoreError::Open {
            path: path.to_owned(),
            message: "the file is empty (0 bytes), not a pintu database; restore it from a \
                      backup, or delete it to start a new database with a new admin token"
                .to_owned(),
        }),
        _ => Ok(()),
    }
}

/// Gives a file redb has just created the private mode (redb creates it with the umask's).
pub fn make_private(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let current = std::fs::metadata(path)
            .map_err(|e| StoreError::Open {
                path: path.to_owned(),
                message: e.to_string(),
            })?
            .permissions()
            .mode()
            & 0o777;
        if current & !FILE_MODE != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(current & FILE_MODE))
                .map_err(|e| StoreError::Open {
                    path: path.to_owned(),
                    message: format!("cannot make it private: {e}"),
                })?;
        }
    }
    Ok(())
}

//! `atprov.toml`: defaults for the flags a bench engineer repeats (port, baud, profile, job),
//! like `espflash.toml`. Looked for in the working folder, then in the user's config folder
//! (`$XDG_CONFIG_HOME/atprov/atprov.toml`, else `~/.config/atprov/atprov.toml`). A flag beats
//! an `ATPROV_*` environment variable, which beats the file: the file's values become those
//! variables when they are unset, before the command line is parsed.

use std::path::{Path, PathBuf};

use crate::error::{Failure, InputError};

/// The file's settings.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    /// `--port` (`ATPROV_PORT`).
    port: Option<String>,
    /// `--baud` (`ATPROV_BAUD`).
    baud: Option<u32>,
    /// `--profile` (`ATPROV_PROFILE`).
    profile: Option<String>,
    /// `--job` (`ATPROV_JOB`), relative to the file's folder.
    job: Option<PathBuf>,
}

/// Where the defaults file is, if there is one.
fn find() -> Option<PathBuf> {
    let here = PathBuf::from("atprov.toml");
    if here.is_file() {
        return Some(here);
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))?;
    let user = base.join("atprov").join("atprov.toml");
    user.is_file().then_some(user)
}

/// Reads the defaults file and sets the `ATPROV_*` variables it gives that are not set yet.
/// Must run before any thread starts (it changes the environment). The error is one line
/// naming the file, located like every other file a person writes.
pub fn apply() -> Result<(), Failure> {
    let Some(path) = find() else {
        return Ok(());
    };
    let text =
        std::fs::read_to_string(&path).map_err(|e| Failure::unreadable(path.display(), &e))?;
    let d: Defaults = toml::from_str(&text)
        .map_err(|e| InputError::from_toml(&path.display().to_string(), &text, &e))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let job = d.job.map(|j| dir.join(j).display().to_string());
    for (var, value) in [
        ("ATPROV_PORT", d.port),
        ("ATPROV_BAUD", d.baud.map(|b| b.to_string())),
        ("ATPROV_PROFILE", d.profile),
        ("ATPROV_JOB", job),
    ] {
        if let Some(value) = value
            && std::env::var_os(var).is_none()
        {
            // SAFETY: called from main before the runtime or any other thread exists.
            unsafe { std::env::set_var(var, value) };
        }
    }
    Ok(())
}

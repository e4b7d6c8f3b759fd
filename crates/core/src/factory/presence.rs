//! Presence: when a unit is on a station's port and when it has gone. A device node that
//! appears is a unit; it has gone when the node vanishes or is replaced (a new inode or change
//! time: a fast re-plug under the same name is seen), or, on a jig whose port never goes
//! away, when another unit answers there.

use super::allocation::unit_identity;
use super::config::Removal;
use super::journal::UnitIdentity;
use super::station::{Line, answers, open};
use crate::port::{Selector, list_ports, matching_usb};
use crate::provision::{Provisioning, Silent, Stage};

use std::time::Duration;

/// The port of the next unit, or `None` after a poll interval without one.
pub(super) async fn find_port(line: &Line, selector: &Selector) -> Option<String> {
    let found = match selector {
        Selector::Path(p) => p.exists().then(|| p.display().to_string()),
        Selector::Usb { .. } => {
            let ports = matching_usb(selector, list_ports().unwrap_or_default());
            let mut claimed = line.claimed.lock().unwrap_or_else(|p| p.into_inner());
            let next = ports.into_iter().find(|p| !claimed.contains(&p.path));
            next.map(|p| {
                claimed.insert(p.path.clone());
                p.path
            })
        }
        other => Some(other.to_string()),
    };
    if found.is_none() {
        line.pause(line.config.policy.poll).await;
    }
    found
}

/// What tells one plugged-in device node from the next under the same name: a re-plug makes
/// a new node (new inode or change time) even when the name and its number are reused, and a
/// station polling every 100 ms may never see the moment the name was missing.
pub(super) fn device_fingerprint(port: &str) -> Option<(u64, i64, i64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(port).ok()?;
    Some((m.ino(), m.ctime(), m.ctime_nsec(), m.rdev()))
}

/// Waits until the unit on `port` is gone: the device node vanished or was replaced (or, on a
/// jig, another unit answers there).
pub(super) async fn wait_for_removal(
    line: &Line,
    selector: &Selector,
    port: &str,
    device: Option<(u64, i64, i64, u64)>,
    identity: Option<&UnitIdentity>,
) {
    let gone = |port: &str| device_fingerprint(port).is_none_or(|d| Some(d) != device);
    let by_identity = line.config.policy.removal == Removal::Identity;
    while !line.stopping() {
        if matches!(selector, Selector::Tcp { .. }) && !by_identity {
            return;
        }
        if gone(port) {
            return;
        }
        if by_identity
            && let Some(other) = identify_only(line, port).await
            && identity.is_none_or(|i| i.key != other.key)
        {
            return;
        }
        line.pause(line.config.policy.poll).await;
    }
}

/// Opens the port and identifies whatever answers, quietly.
pub(super) async fn identify_only(line: &Line, port: &str) -> Option<UnitIdentity> {
    let link = open(line, port, None).await.ok()?;
    let mut p = Provisioning::new(
        link.engine.clone(),
        line.profile.clone(),
        &line.job,
        port.to_string(),
        false,
    );
    let answered = answers(&link.engine, Duration::from_millis(500)).await
        && p.stage(Stage::Init, None, &mut Silent).await
        && p.stage(Stage::Identify, None, &mut Silent).await;
    let identity = p.identity();
    link.close().await;
    if answered {
        unit_identity(&identity).ok()
    } else {
        None
    }
}
